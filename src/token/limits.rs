//! Brute-force limits: failed client-secret and password checks are counted per account
//! (a client id, or a pool and username) and per client address, with pingora-limits' rate
//! estimator. Past a limit, attempts are refused before any hash is computed, so an attack
//! neither guesses on nor burns CPU.

use crate::config::LimitSettings;
use pingora_limits::rate::{Rate, RateComponents};
use std::hash::Hash;
use std::net::IpAddr;

/// Who failed.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Subject<'a> {
    Client(&'a str),
    User { pool: &'a str, username: &'a str },
}

impl Subject<'_> {
    /// The bounded `subject` metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Subject::Client(_) => "client",
            Subject::User { .. } => "user",
        }
    }
}

#[derive(Hash)]
enum Key<'a> {
    Account(Subject<'a>),
    Ip(IpAddr),
}

/// Why an attempt is refused: which limit, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub label: &'static str,
    pub retry_after_secs: u64,
}

pub struct AttemptLimiter {
    failures: Rate,
    settings: LimitSettings,
}

impl AttemptLimiter {
    pub fn new(settings: LimitSettings) -> Self {
        Self {
            // 4 hashes × 8192 slots: collisions between keys stay rare under attack.
            failures: Rate::new_with_estimator_config(settings.window, 4, 8192),
            settings,
        }
    }

    /// Failures of `key` over the last window (the previous window, weighted by how much of
    /// it is still in view, plus the current one).
    fn recent<K: Hash>(&self, key: &K) -> f64 {
        self.failures.rate_with(key, |r: RateComponents| {
            r.prev_samples as f64 * (1.0 - r.current_interval_fraction) + r.curr_samples as f64
        })
    }

    /// Whether `subject` (from `ip`) may attempt an authentication now.
    pub fn check(&self, subject: Subject<'_>, ip: Option<IpAddr>) -> Result<(), Throttled> {
        let retry_after_secs = self.settings.window.as_secs().max(1);
        if self.recent(&Key::Account(subject)) >= f64::from(self.settings.per_account) {
            return Err(Throttled {
                label: subject.label(),
                retry_after_secs,
            });
        }
        if let Some(ip) = ip
            && self.recent(&Key::Ip(ip)) >= f64::from(self.settings.per_ip)
        {
            return Err(Throttled {
                label: "ip",
                retry_after_secs,
            });
        }
        Ok(())
    }

    /// Record a failed attempt.
    pub fn failed(&self, subject: Subject<'_>, ip: Option<IpAddr>) {
        self.failures.observe(&Key::Account(subject), 1);
        if let Some(ip) = ip {
            self.failures.observe(&Key::Ip(ip), 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(per_account: u32, per_ip: u32) -> AttemptLimiter {
        AttemptLimiter::new(LimitSettings {
            window: Duration::from_secs(60),
            per_account,
            per_ip,
            hash_concurrency: 1,
            hash_queue: 0,
            hash_cpu_share: 1.0,
        })
    }

    #[test]
    fn an_account_is_refused_after_its_limit() {
        let l = limiter(3, 100);
        let ip = Some("10.0.0.1".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(l.check(Subject::Client("a"), ip), Ok(()));
            l.failed(Subject::Client("a"), ip);
        }
        let t = l.check(Subject::Client("a"), ip).unwrap_err();
        assert_eq!((t.label, t.retry_after_secs), ("client", 60));
        // Other accounts are unaffected.
        assert_eq!(l.check(Subject::Client("b"), ip), Ok(()));
        let user = Subject::User {
            pool: "p",
            username: "a",
        };
        assert_eq!(
            l.check(user, ip),
            Ok(()),
            "a user named like a client is another account"
        );
    }

    #[test]
    fn an_address_is_refused_across_accounts() {
        let l = limiter(100, 5);
        let ip = Some("10.0.0.2".parse().unwrap());
        for i in 0..5 {
            let name = format!("guess-{i}");
            l.failed(Subject::Client(&name), ip);
        }
        let t = l.check(Subject::Client("fresh"), ip).unwrap_err();
        assert_eq!(t.label, "ip");
        assert_eq!(
            l.check(Subject::Client("fresh"), Some("10.0.0.3".parse().unwrap())),
            Ok(())
        );
        assert_eq!(l.check(Subject::Client("fresh"), None), Ok(()));
    }
}
