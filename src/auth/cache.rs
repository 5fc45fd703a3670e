//! The validated-token cache: moka, keyed by a digest of the token, bounded in size, and
//! never keeping an entry past the token's own `exp`.

use super::Principal;
use crate::config::CacheSettings;
use moka::Expiry;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Cache key: the first 128 bits of SHA-256 over the token. The token itself is never
/// stored, and a forged token cannot be made to land on a valid token's entry.
pub type TokenKey = u128;

pub fn token_key(token: &str) -> TokenKey {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d.as_ref()[..16]);
    u128::from_le_bytes(k)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

struct UntilExp {
    max: Duration,
}

impl Expiry<TokenKey, Arc<Principal>> for UntilExp {
    fn expire_after_create(
        &self,
        _: &TokenKey,
        p: &Arc<Principal>,
        _: Instant,
    ) -> Option<Duration> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let exp = Duration::from_secs(p.exp.max(0) as u64);
        Some(self.max.min(exp.saturating_sub(now)))
    }
}

#[derive(Clone)]
pub struct TokenCache {
    inner: moka::sync::Cache<TokenKey, Arc<Principal>>,
}

impl TokenCache {
    pub fn new(settings: CacheSettings) -> Self {
        Self {
            inner: moka::sync::Cache::builder()
                .max_capacity(settings.max_entries)
                .expire_after(UntilExp { max: settings.ttl })
                .build(),
        }
    }

    /// A cached principal whose token has not expired.
    pub fn get(&self, key: &TokenKey, now: i64) -> Option<Arc<Principal>> {
        self.inner.get(key).filter(|p| p.exp > now)
    }

    pub fn insert(&self, key: TokenKey, principal: Arc<Principal>) {
        self.inner.insert(key, principal);
    }

    pub fn invalidate(&self, key: &TokenKey) {
        self.inner.invalidate(key);
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.run_pending_tasks();
        self.inner.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scope::Scopes;

    fn principal(exp: i64) -> Arc<Principal> {
        Arc::new(Principal {
            sub: None,
            client_id: None,
            username: None,
            audiences: Box::new([]),
            scopes: Scopes::default(),
            exp,
            iat: None,
            jti: None,
            grant_id: None,
        })
    }

    #[test]
    fn keys_differ_per_token_and_are_stable() {
        assert_eq!(token_key("a.b.c"), token_key("a.b.c"));
        assert_ne!(token_key("a.b.c"), token_key("a.b.d"));
    }

    #[test]
    fn entries_never_outlive_exp() {
        let cache = TokenCache::new(CacheSettings {
            max_entries: 10,
            ttl: Duration::from_secs(3600),
        });
        let now = unix_now();
        cache.insert(1, principal(now + 600));
        assert!(cache.get(&1, now).is_some());
        // Past its exp the entry is not served even if moka still holds it.
        assert!(cache.get(&1, now + 600).is_none());
        // A token already expired is dropped by the expiry policy at once.
        cache.insert(2, principal(now - 1));
        assert!(cache.get(&2, now - 10).is_none());
        cache.invalidate(&1);
        assert!(cache.get(&1, now).is_none());
    }

    #[test]
    fn size_is_bounded() {
        let cache = TokenCache::new(CacheSettings {
            max_entries: 100,
            ttl: Duration::from_secs(60),
        });
        let exp = unix_now() + 600;
        for k in 0..1000u128 {
            cache.insert(k, principal(exp));
        }
        assert!(cache.entry_count() <= 100, "{}", cache.entry_count());
    }
}
