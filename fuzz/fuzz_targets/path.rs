//! Any request path: normalization never panics, and what it lets through is clean (no
//! empty, `.` or `..` segment, plain or percent-encoded) and normalizes to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::borrow::Cow;
use tollgate::path::normalize;

fn is_dots(seg: &str) -> bool {
    let decoded = seg.replace("%2e", ".").replace("%2E", ".");
    decoded == "." || decoded == ".."
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(clean) = normalize(path) else {
        return;
    };
    assert!(clean.starts_with('/'));
    assert!(!clean.contains('\\'));
    let segments: Vec<&str> = clean[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        assert!(!is_dots(seg), "{clean:?}");
        assert!(!seg.is_empty() || i == last, "{clean:?}");
    }
    for encoded in ["%2f", "%2F", "%5c", "%5C", "%00"] {
        assert!(!clean.contains(encoded));
    }
    assert!(matches!(normalize(&clean), Ok(Cow::Borrowed(p)) if p == clean));
});
