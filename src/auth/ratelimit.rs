//! Rate limits per consumer (a credential, or the client of a token): GCRA from the
//! `governor` crate, keyed by a hash of the consumer, one limiter per API and per limited
//! operation. Answers carry the IETF RateLimit headers (draft-ietf-httpapi-ratelimit-headers:
//! `RateLimit-Limit`, `-Remaining`, `-Reset`, `-Policy`); a refusal is 429 with `Retry-After`.
//!
//! Each node counts alone: N gateways behind a load balancer allow up to N times the rate.

use crate::config::RateLimit;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderName, HeaderValue};
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroU32;
use std::time::Duration;

type Inner =
    RateLimiter<u64, DefaultKeyedStateStore<u64>, DefaultClock, StateInformationMiddleware>;

/// What a limit said about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// `RateLimit-Limit`: requests allowed at once.
    pub limit: u32,
    /// `RateLimit-Remaining`.
    pub remaining: u32,
    /// `RateLimit-Reset`: seconds until the full allowance is back.
    pub reset_secs: u64,
    /// `Retry-After` of a refusal: seconds until one more request is allowed.
    pub retry_after_secs: u64,
}

impl Decision {
    /// The RateLimit header values, `Policy` included.
    pub fn headers(&self, policy: &HeaderValue) -> [(&'static HeaderName, HeaderValue); 4] {
        static LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
        static REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
        static RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
        static POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
        [
            (&LIMIT, HeaderValue::from(self.limit)),
            (&REMAINING, HeaderValue::from(self.remaining)),
            (&RESET, HeaderValue::from(self.reset_secs)),
            (&POLICY, policy.clone()),
        ]
    }
}

pub struct Limiter {
    limit: RateLimit,
    inner: Inner,
    clock: DefaultClock,
    /// `<requests>;w=<seconds>;burst=<burst>`
    policy: HeaderValue,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Self {
        let one = NonZeroU32::MIN;
        let period = (limit.per / limit.requests.max(1)).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(one))
            .allow_burst(NonZeroU32::new(limit.burst).unwrap_or(one));
        let window = limit.per.as_secs_f64().ceil().max(1.0) as u64;
        let policy = HeaderValue::from_str(&format!(
            "{};w={window};burst={}",
            limit.requests, limit.burst
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("0"));
        Self {
            limit,
            inner: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            clock: DefaultClock::default(),
            policy,
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    pub fn policy(&self) -> &HeaderValue {
        &self.policy
    }

    /// Count one request of `consumer`.
    pub fn check(&self, consumer: u64) -> Decision {
        let period = self.limit.per / self.limit.requests.max(1);
        let ceil_secs = |d: Duration| d.as_nanos().div_ceil(1_000_000_000) as u64;
        match self.inner.check_key(&consumer) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = self.limit.burst.saturating_sub(remaining);
                Decision {
                    allowed: true,
                    limit: self.limit.burst,
                    remaining,
                    reset_secs: ceil_secs(period * used),
                    retry_after_secs: 0,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision {
                    allowed: false,
                    limit: self.limit.burst,
                    remaining: 0,
                    reset_secs: ceil_secs(period * self.limit.burst),
                    retry_after_secs: ceil_secs(wait).max(1),
                }
            }
        }
    }

    /// Forget consumers whose allowance is full again (memory stays bounded by the
    /// consumers seen within one window).
    pub fn forget_idle(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }
}

/// Hashes consumer names into limiter keys, under a key drawn at start.
pub struct ConsumerKeys(RandomState);

impl Default for ConsumerKeys {
    fn default() -> Self {
        Self(RandomState::new())
    }
}

impl ConsumerKeys {
    pub fn of(&self, parts: &[&str]) -> u64 {
        self.0.hash_one(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let l = Limiter::new(RateLimit {
            requests: 2,
            per: Duration::from_secs(60),
            burst: 3,
        });
        let d = l.check(1);
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining), (3, 2));
        assert!(l.check(1).allowed);
        let d = l.check(1);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        // 2 per minute: the next one in about 30 s.
        let d = l.check(1);
        assert!(!d.allowed);
        assert!((29..=30).contains(&d.retry_after_secs), "{d:?}");
        assert_eq!(d.reset_secs, 90);
        // Another consumer has its own allowance.
        assert!(l.check(2).allowed);
        assert_eq!(l.policy(), "2;w=60;burst=3");
    }

    #[test]
    fn consumer_keys_differ_per_consumer() {
        let k = ConsumerKeys::default();
        assert_eq!(k.of(&["a", "b"]), k.of(&["a", "b"]));
        assert_ne!(k.of(&["ab", ""]), k.of(&["a", "b"]));
    }
}
