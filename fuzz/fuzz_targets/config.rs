//! Any pair of config files: validation never panics, and a refusal names at least one
//! error, each with a message.
//!
//! Input: the gateway file, a NUL, the upstreams file it names.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (gateway, upstreams) = text.split_once('\0').unwrap_or((text, ""));
    let path = Path::new("/nonexistent/tollgate/tollgate.yaml");
    if let Err(errors) = tollgate::config::parse(path, gateway, upstreams) {
        assert!(!errors.0.is_empty());
        assert!(errors.0.iter().all(|e| !e.message.is_empty()));
    }
});
