//! Any token request: the body parser and client-authentication reader never panic; an
//! accepted form names each parameter once, and an accepted client has an id and used
//! exactly one authentication method.
//!
//! Input: one flag byte (bit 0: an `Authorization` header is present), then the header
//! value up to the first NUL, then the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::token::client_auth::{AuthMethod, presented_client};
use tollgate::token::form::{Form, MAX_PARAMS};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (authorization, body) = if flags & 1 == 1 {
        match rest.iter().position(|&b| b == 0) {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (Some(rest), &[][..]),
        }
    } else {
        (None, rest)
    };
    let Ok(form) = Form::parse(body) else {
        return;
    };
    let mut names: Vec<String> = form_urlencoded::parse(body)
        .map(|(k, _)| k.into_owned())
        .collect();
    assert!(names.len() <= MAX_PARAMS);
    names.sort();
    let count = names.len();
    names.dedup();
    assert_eq!(names.len(), count, "a repeated parameter was accepted");
    for (k, v) in form_urlencoded::parse(body) {
        assert_eq!(form.get(&k), (!v.is_empty()).then_some(&*v));
    }
    let Ok(client) = presented_client(authorization, &form) else {
        return;
    };
    match client.method {
        AuthMethod::Basic => {
            assert!(authorization.is_some());
            assert!(!client.id.is_empty());
            assert!(form.get("client_secret").is_none());
        }
        AuthMethod::Post => {
            assert!(authorization.is_none());
            assert_eq!(form.get("client_id"), Some(client.id.as_str()));
        }
    }
});
