//! The validated-token cache: moka, keyed by a digest of the token, bounded in size and
//! in time (`validation_cache.ttl`), and never serving an entry past the token's `exp`.

use super::Principal;
use crate::config::CacheSettings;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

/// Cache key: a 128-bit SipHash-1-3 of the token under a key drawn at start-up. The token
/// itself is never stored. SipHash is a keyed pseudorandom function: without the key, which
/// never leaves the process, no one can make a forged token land on a valid token's entry
/// (2^-128 per try). It costs a fraction of SHA-256 over a 500-byte JWT, on every request.
pub type TokenKey = u128;

/// Derives [`TokenKey`]s with this process's secret key.
#[derive(Clone)]
pub struct TokenKeys(SipHasher13);

impl TokenKeys {
    /// A fresh secret key: four outputs of std's `RandomState` (SipHash under a key from
    /// the operating system's random source).
    pub fn random() -> Self {
        let seed = RandomState::new();
        let mut key = [0u8; 16];
        let (a, b) = key.split_at_mut(8);
        a.copy_from_slice(&seed.hash_one(0u8).to_le_bytes());
        b.copy_from_slice(&seed.hash_one(1u8).to_le_bytes());
        Self(SipHasher13::new_with_key(&key))
    }

    pub fn of(&self, token: &str) -> TokenKey {
        let mut h = self.0;
        h.write(token.as_bytes());
        h.finish128().as_u128()
    }
}

/// moka's hasher for [`TokenKey`]s. A key is already the output of a keyed pseudorandom
/// function, so hashing it again (moka's default is SipHash, once per lookup) adds
/// nothing: its two halves folded together are as unpredictable as a hash of it.
#[derive(Default)]
pub struct FoldKey(u64);

impl Hasher for FoldKey {
    fn write_u128(&mut self, key: u128) {
        self.0 ^= (key as u64) ^ ((key >> 64) as u64);
    }

    /// Not reached for a `u128` key (its `Hash` calls `write_u128`); folds eight bytes at
    /// a time so that any other input still spreads.
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Clone)]
pub struct TokenCache {
    inner: moka::sync::Cache<TokenKey, Principal, BuildHasherDefault<FoldKey>>,
    keys: TokenKeys,
}

impl TokenCache {
    pub fn new(settings: CacheSettings) -> Self {
        Self {
            inner: moka::sync::Cache::builder()
                .max_capacity(settings.max_entries)
                // One time-to-live for all entries rather than a per-entry expiry at the
                // token's `exp`: moka then keeps no timer-wheel node per entry (about a
                // fifth of an entry's memory). `get` never serves a token past its `exp`,
                // and drops the entry when it finds one.
                .time_to_live(settings.ttl)
                .build_with_hasher(BuildHasherDefault::default()),
            keys: TokenKeys::random(),
        }
    }

    /// The cache key of `token`.
    pub fn key(&self, token: &str) -> TokenKey {
        self.keys.of(token)
    }

    /// A cached principal whose token has not expired.
    pub fn get(&self, key: &TokenKey, now: i64) -> Option<Principal> {
        let p = self.inner.get(key)?;
        if p.exp > now {
            Some(p)
        } else {
            self.inner.invalidate(key);
            None
        }
    }

    pub fn insert(&self, key: TokenKey, principal: Principal) {
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
    use crate::auth::Holder;
    use crate::auth::identity::{ClaimPlan, IdentityValues, Who};
    use crate::domain::clock::unix_now;
    use crate::domain::oauth::WayIn;
    use crate::domain::scope::Scopes;
    use std::sync::Arc;
    use std::time::Duration;

    fn principal(exp: i64) -> Principal {
        Principal {
            holder: Arc::new(Holder {
                issuer: None,
                sub: None,
                client_id: None,
                username: None,
                audiences: Box::new([]),
                scopes: Scopes::default(),
                identity: IdentityValues::new(
                    Who {
                        way_in: WayIn::Jwt,
                        subject: None,
                        client_id: None,
                        scopes: &Scopes::default(),
                        issuer: None,
                        credential: None,
                    },
                    None,
                    &ClaimPlan::none(),
                ),
            }),
            exp,
            iat: None,
            jti: None,
            grant_id: None,
            cnf: None,
            ath: None,
        }
    }

    #[test]
    fn keys_differ_per_token_and_per_process_key() {
        let keys = TokenKeys::random();
        assert_eq!(keys.of("a.b.c"), keys.of("a.b.c"));
        assert_ne!(keys.of("a.b.c"), keys.of("a.b.d"));
        // Another cache (another process) keys the same token differently.
        assert_ne!(keys.of("a.b.c"), TokenKeys::random().of("a.b.c"));
    }

    #[test]
    fn the_cache_hasher_spreads_both_halves_of_a_key() {
        let hash = |key: u128| BuildHasherDefault::<FoldKey>::default().hash_one(key);
        assert_ne!(hash(1), hash(2));
        assert_ne!(hash(1 << 64), hash(2 << 64));
        assert_eq!(hash(7), 7);
        let mut h = FoldKey::default();
        h.write(b"abcdefgh-tail");
        assert_ne!(h.finish(), 0);
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
        // Past its exp the entry is not served, and is dropped.
        assert!(cache.get(&1, now + 600).is_none());
        assert!(cache.get(&1, now).is_none());
        cache.insert(2, principal(now + 600));
        cache.invalidate(&2);
        assert!(cache.get(&2, now).is_none());
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
