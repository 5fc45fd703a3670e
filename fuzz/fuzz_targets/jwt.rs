//! Any string presented as a JWT: parsing never panics, and nothing validates, since no
//! input can carry a signature by the gateway's key. The same string is also tried as the
//! signature of a genuine header and claims: only the genuine signature passes.

#![no_main]

#[path = "keys.rs"]
mod keys;

use keys::{FIXTURE, ISSUER, NOW};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

/// A token that validates: (header.claims, signature).
static GENUINE: LazyLock<(String, String)> = LazyLock::new(|| {
    let claims = format!(
        r#"{{"iss":"{ISSUER}","sub":"c1","aud":["orders"],"exp":{}}}"#,
        NOW + 600
    );
    let token = FIXTURE
        .keys
        .get()
        .signing()
        .sign_compact(claims.as_bytes())
        .expect("signing");
    assert!(
        FIXTURE
            .validator
            .validate(&token, NOW, &FIXTURE.plan)
            .is_ok()
    );
    let (input, signature) = token.rsplit_once('.').expect("three parts");
    (input.to_string(), signature.to_string())
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(unverified) = tollgate::jwt::parse(token) {
        assert!(token.as_bytes().starts_with(unverified.signing_input));
        assert_eq!(
            token.as_bytes().get(unverified.signing_input.len()),
            Some(&b'.')
        );
        let _ = unverified.claims();
    }
    assert!(FIXTURE.validator.signed_claims(token).is_err());
    assert!(
        FIXTURE
            .validator
            .validate(token, NOW, &FIXTURE.plan)
            .is_err()
    );

    let (input, signature) = &*GENUINE;
    let spliced = format!("{input}.{token}");
    assert!(
        token == signature
            || FIXTURE
                .validator
                .validate(&spliced, NOW, &FIXTURE.plan)
                .is_err()
    );
});
