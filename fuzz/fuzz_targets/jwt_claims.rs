//! Any claims set, signed by the gateway's own key: the claims parser never panics, and a
//! token that validates has this issuer and is not expired.

#![no_main]

#[path = "keys.rs"]
mod keys;

use keys::{FIXTURE, ISSUER, LEEWAY, NOW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = FIXTURE.keys.get().signing().sign_compact(data) else {
        return;
    };
    let Ok(principal) = FIXTURE.validator.validate(&token, NOW, &FIXTURE.plan) else {
        return;
    };
    // Accepted claims are a JSON object without repeated names, so any JSON reader agrees
    // with ours about them.
    let value: serde_json::Value = serde_json::from_slice(data).expect("accepted claims are JSON");
    assert_eq!(value["iss"], ISSUER);
    assert!(principal.exp > NOW - LEEWAY);
    match value.get("exp") {
        Some(serde_json::Value::Null) | None => assert_eq!(principal.exp, i64::MAX),
        // NumericDate may have a fraction (RFC 7519 §2); it is dropped.
        Some(exp) => assert_eq!(
            exp.as_i64()
                .or_else(|| exp.as_f64().map(|f| f.floor() as i64)),
            Some(principal.exp)
        ),
    }
});
