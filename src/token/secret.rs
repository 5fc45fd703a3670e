//! Client secrets and user passwords: argon2 hashes in the config, verification on blocking
//! threads (bounded, so a flood of attempts cannot exhaust memory), and a short cache of
//! successes so the hash cost is not paid on every token request. Failures are never
//! cached. Concurrent checks of one secret share one verification (single flight), and a
//! secret in use is verified again in the background before its entry expires, so a busy
//! client never waits for argon2 at an expiry.

use crate::config::{CacheSettings, LimitSettings};
use crate::domain::secret::Secret;
use crate::domain::secret::{HashError, hash_secret};
use aws_lc_rs::hmac;
use prometheus::IntCounter;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use crate::domain::secret::verify_secret as verify_blocking;

/// Why the verifier cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    #[error("no randomness available for the secret cache")]
    NoRandomness,
    #[error(transparent)]
    Hash(#[from] HashError),
}

/// A verified secret: when, and whether a refresh of it is under way.
struct Verified {
    at: Instant,
    refreshing: AtomicBool,
}

impl Verified {
    fn now() -> Arc<Self> {
        Arc::new(Self {
            at: Instant::now(),
            refreshing: AtomicBool::new(false),
        })
    }
}

/// Why a check has no answer: the hashing queue is full, so it was not run. The token
/// endpoints shed the request (503 with Retry-After) instead of queueing without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many secret checks are waiting")]
pub struct Busy;

/// How a verification ended without a match: shared by the checks that waited on it, and
/// never cached.
#[derive(Debug)]
enum NoMatch {
    Mismatch,
    Busy,
}

/// The part of the verifier a background refresh takes along.
#[derive(Clone)]
struct Hasher {
    /// argon2 needs ~19 MiB per verification, and a core: at most this many run at once.
    permits: Arc<Semaphore>,
    /// Checks waiting for a permit, and how many may.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// After a run of d, its slot rests d × this: a slot keeps at most
    /// `hash_cpu_share` of a core busy.
    rest_factor: f64,
    runs: IntCounter,
}

impl Hasher {
    async fn verify(&self, secret: &str, phc: Arc<str>) -> Result<bool, Busy> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(Busy);
                }
                let p = self.permits.clone().acquire_owned().await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                p.map_err(|_| Busy)?
            }
        };
        self.runs.inc();
        let secret = Secret::new(secret.to_string());
        let started = Instant::now();
        let ok = tokio::task::spawn_blocking(move || verify_blocking(secret.expose(), &phc))
            .await
            .unwrap_or(false);
        if self.rest_factor > 0.0 {
            // The caller has its answer now; the slot rests before the next check may use
            // it (a flood's attempts wait or are shed meanwhile).
            let rest = started.elapsed().mul_f64(self.rest_factor);
            tokio::spawn(async move {
                tokio::time::sleep(rest).await;
                drop(permit);
            });
        }
        Ok(ok)
    }
}

/// Verifies client secrets against their hashes, remembering recent successes.
pub struct SecretVerifier {
    /// Keyed digest of (client id, hash, secret) → verified. The secret itself is never stored.
    cache: moka::future::Cache<[u8; 32], Arc<Verified>>,
    /// An entry this old is verified again in the background when used.
    refresh_after: Duration,
    key: hmac::Key,
    /// Verified against when the client is unknown, so timing does not reveal which ids exist.
    dummy_hash: Arc<str>,
    hasher: Hasher,
}

impl SecretVerifier {
    /// A reader of how many verified secrets are cached (for `tollgate_cache_entries`).
    /// Counted by walking the live entries (at most `client_auth_cache.max_entries`, once
    /// per scrape): moka's own count trails until its maintenance runs, which an async
    /// cache does only from an async caller.
    pub fn size_reader(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let cache = self.cache.clone();
        move || cache.iter().count() as u64
    }

    /// `runs` counts argon2 verifications; `limits` bounds them and their queue.
    pub fn new(
        settings: CacheSettings,
        limits: &LimitSettings,
        runs: IntCounter,
    ) -> Result<Self, VerifierError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map_err(|_| VerifierError::NoRandomness)?;
        let mut random = [0u8; 32];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| VerifierError::NoRandomness)?;
        let dummy_hash = hash_secret(&base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            random,
        ))?;
        Ok(Self {
            cache: moka::future::Cache::builder()
                .max_capacity(settings.max_entries)
                .time_to_live(settings.ttl)
                .build(),
            refresh_after: settings.ttl.mul_f64(0.75),
            key,
            dummy_hash: dummy_hash.into(),
            hasher: Hasher {
                permits: Arc::new(Semaphore::new(limits.hash_concurrency.max(1))),
                waiting: Arc::new(AtomicUsize::new(0)),
                max_waiting: limits.hash_queue,
                rest_factor: 1.0 / limits.hash_cpu_share.clamp(0.05, 1.0) - 1.0,
                runs,
            },
        })
    }

    fn cache_key(&self, client_id: &str, hash: &str, secret: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [client_id, hash, secret] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Whether `secret` matches `hash`. `hash` is `None` for an unknown client: the
    /// same work is done and the answer is false. `Busy` when the hashing queue is full.
    pub async fn verify(
        &self,
        client_id: &str,
        secret: &str,
        hash: Option<&Secret<String>>,
    ) -> Result<bool, Busy> {
        let Some(hash) = hash else {
            self.hasher.verify(secret, self.dummy_hash.clone()).await?;
            return Ok(false);
        };
        let phc: Arc<str> = Arc::from(hash.expose().as_str());
        let key = self.cache_key(client_id, &phc, secret);
        if let Some(hit) = self.cache.get(&key).await {
            self.refresh_ahead(&hit, key, secret, &phc);
            return Ok(true);
        }
        // The first check of this secret verifies; the others arriving meanwhile wait for
        // its answer. Only a match is kept.
        let answer = self
            .cache
            .try_get_with(key, async {
                match self.hasher.verify(secret, phc).await {
                    Ok(true) => Ok(Verified::now()),
                    Ok(false) => Err(NoMatch::Mismatch),
                    Err(Busy) => Err(NoMatch::Busy),
                }
            })
            .await;
        match answer {
            Ok(_) => Ok(true),
            Err(e) => match *e {
                NoMatch::Mismatch => Ok(false),
                NoMatch::Busy => Err(Busy),
            },
        }
    }

    /// An entry past `refresh_after` is verified again by one background task and replaced
    /// with a fresh one, before it expires under a busy client.
    fn refresh_ahead(&self, hit: &Verified, key: [u8; 32], secret: &str, phc: &Arc<str>) {
        if hit.at.elapsed() < self.refresh_after || hit.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (cache, hasher, phc) = (self.cache.clone(), self.hasher.clone(), phc.clone());
        let secret = Secret::new(secret.to_string());
        tokio::spawn(async move {
            match hasher.verify(secret.expose(), phc).await {
                Ok(true) => cache.insert(key, Verified::now()).await,
                Ok(false) => cache.invalidate(&key).await,
                // Shed like any check: the entry lives out its ttl.
                Err(Busy) => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn verifier(ttl: Duration) -> SecretVerifier {
        let runs = IntCounter::new("runs", "argon2 runs").unwrap();
        let limits = LimitSettings {
            window: Duration::from_secs(60),
            per_account: 10,
            per_ip: 10,
            hash_concurrency: 2,
            hash_queue: 64,
            hash_cpu_share: 1.0,
        };
        SecretVerifier::new(
            CacheSettings {
                max_entries: 10,
                ttl,
            },
            &limits,
            runs,
        )
        .unwrap()
    }

    fn runs(v: &SecretVerifier) -> u64 {
        v.hasher.runs.get()
    }

    #[tokio::test]
    async fn verifies_caches_success_and_never_failure() {
        let v = verifier(Duration::from_secs(60));
        let hash = Secret::new(hash_secret("right").unwrap());
        assert!(!v.verify("c", "wrong", Some(&hash)).await.unwrap());
        assert!(!v.verify("c", "wrong", Some(&hash)).await.unwrap());
        assert_eq!(runs(&v), 2, "a mismatch is verified every time");
        v.cache.run_pending_tasks().await;
        assert_eq!(v.cache.entry_count(), 0);
        assert!(v.verify("c", "right", Some(&hash)).await.unwrap());
        assert!(v.verify("c", "right", Some(&hash)).await.unwrap());
        assert_eq!(runs(&v), 3, "a match is verified once");
        // The cached success is bound to the client id and the hash.
        assert!(!v.verify("other", "right", None).await.unwrap());
        let rotated = Secret::new(hash_secret("new").unwrap());
        assert!(!v.verify("c", "right", Some(&rotated)).await.unwrap());
        // An unknown client never verifies, even with the dummy hash's own input, and costs
        // an argon2 run like a known one.
        let before = runs(&v);
        assert!(!v.verify("ghost", "", None).await.unwrap());
        assert_eq!(runs(&v), before + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_checks_of_one_secret_share_one_verification() {
        let v = Arc::new(verifier(Duration::from_secs(60)));
        let hash = Arc::new(Secret::new(hash_secret("right").unwrap()));
        let checks: Vec<_> = (0..64)
            .map(|_| {
                let (v, hash) = (v.clone(), hash.clone());
                tokio::spawn(async move { v.verify("c", "right", Some(&hash)).await.unwrap() })
            })
            .collect();
        for c in checks {
            assert!(c.await.unwrap());
        }
        assert_eq!(runs(&v), 1);
        // Wrong secrets share too, and are still refused, each caller told so.
        let checks: Vec<_> = (0..16)
            .map(|_| {
                let (v, hash) = (v.clone(), hash.clone());
                tokio::spawn(async move { v.verify("c", "wrong", Some(&hash)).await.unwrap() })
            })
            .collect();
        for c in checks {
            assert!(!c.await.unwrap());
        }
        assert!(runs(&v) >= 2);
        assert!(!v.verify("c", "wrong", Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn a_secret_in_use_is_verified_again_before_its_entry_expires() {
        let ttl = Duration::from_secs(3);
        let v = verifier(ttl);
        let hash = Secret::new(hash_secret("right").unwrap());
        assert!(v.verify("c", "right", Some(&hash)).await.unwrap());
        assert_eq!(runs(&v), 1);
        let key = v.cache_key("c", hash.expose(), "right");
        let first = v.cache.get(&key).await.unwrap().at;
        // Past three quarters of its life, a use answers from the cache and starts one
        // background verification that replaces the entry.
        tokio::time::sleep(ttl.mul_f64(0.8)).await;
        assert!(v.verify("c", "right", Some(&hash)).await.unwrap());
        assert!(v.verify("c", "right", Some(&hash)).await.unwrap());
        let mut refreshed = None;
        for _ in 0..500 {
            refreshed = v
                .cache
                .get(&key)
                .await
                .map(|e| e.at)
                .filter(|at| *at > first);
            if refreshed.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refreshed.is_some(), "the entry was not refreshed");
        assert_eq!(runs(&v), 2, "one refresh");
        // Past the first entry's expiry, the refreshed one answers: no verification waited on.
        let until = first + ttl + Duration::from_millis(100);
        tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
        assert!(v.verify("c", "right", Some(&hash)).await.unwrap());
        assert_eq!(runs(&v), 2);
    }
}
