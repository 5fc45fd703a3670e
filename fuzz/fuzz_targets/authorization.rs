//! Any `Authorization` header value: the bearer parser never panics, and what it calls a
//! token is an RFC 6750 b64token cut from the value.

#![no_main]

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tollgate::auth::bearer::{Presented, extract, parse};

fn b64token(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Presented::Token(t) | Presented::Dpop(t) = parse(text)
    {
        assert!(b64token(t), "{t:?}");
        assert!(text.contains(t));
    }
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value.clone());
    let single = extract(&headers);
    if let Ok(text) = value.to_str() {
        assert_eq!(single, parse(text));
    } else {
        assert_eq!(single, Presented::Malformed);
    }
    // Two headers are never a token.
    headers.append(AUTHORIZATION, value);
    assert_eq!(extract(&headers), Presented::Malformed);
});
