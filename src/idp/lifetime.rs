//! How long a fetched key set is kept: the response's `Cache-Control` (RFC 9111 §5.2.2),
//! less its `Age`, bounded by the issuer's minimum and maximum lifetimes.

use crate::config::RefreshSettings;
use http::HeaderMap;
use http::header::{AGE, CACHE_CONTROL};
use std::time::Duration;

/// What a response says about its own freshness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Freshness {
    /// `max-age=N` (the first one, RFC 9111 §4.2.1), in seconds.
    MaxAge(u64),
    /// `no-cache` or `no-store`: keep it as briefly as allowed.
    DoNotKeep,
    /// No usable directive.
    Unspecified,
}

/// Read `Cache-Control`, every line of it.
pub(super) fn freshness(headers: &HeaderMap) -> Freshness {
    let mut max_age = None;
    let mut do_not_keep = false;
    for line in headers.get_all(CACHE_CONTROL) {
        let Ok(line) = line.to_str() else { continue };
        for directive in line.split(',') {
            let (name, value) = match directive.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
                do_not_keep = true;
            } else if name.eq_ignore_ascii_case("max-age") && max_age.is_none() {
                max_age = value.and_then(delta_seconds);
            }
        }
    }
    match (do_not_keep, max_age) {
        (true, _) => Freshness::DoNotKeep,
        (false, Some(s)) => Freshness::MaxAge(s),
        (false, None) => Freshness::Unspecified,
    }
}

/// RFC 9111 §1.2.2 delta-seconds: digits only; too large a number means "very long".
fn delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// `Age`, the seconds a cache in front of the provider already held the response.
fn age(headers: &HeaderMap) -> u64 {
    headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| delta_seconds(v.trim()))
        .unwrap_or(0)
}

/// How long to keep a key set fetched with these response headers.
pub(super) fn lifetime(headers: &HeaderMap, settings: &RefreshSettings) -> Duration {
    let wanted = match freshness(headers) {
        Freshness::MaxAge(s) => Duration::from_secs(s.saturating_sub(age(headers))),
        Freshness::DoNotKeep => settings.min_lifetime,
        Freshness::Unspecified => settings.default_lifetime,
    };
    clamp(wanted, settings)
}

/// `wanted` bounded by the minimum and maximum lifetimes.
pub(super) fn clamp(wanted: Duration, settings: &RefreshSettings) -> Duration {
    wanted.clamp(
        settings.min_lifetime,
        settings.max_lifetime.max(settings.min_lifetime),
    )
}
