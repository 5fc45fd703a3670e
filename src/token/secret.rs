//! Client secrets: argon2 hashes in the config, verification on blocking threads (bounded,
//! so a flood of attempts cannot exhaust memory), and a short cache of successes so the
//! hash cost is not paid on every token request. Failures are never cached.

use crate::config::CacheSettings;
use crate::domain::secret::Secret;
use crate::domain::secret::{HashError, hash_secret};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use aws_lc_rs::hmac;
use std::sync::Arc;
use tokio::sync::Semaphore;

fn verify_blocking(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Why the verifier cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    #[error("no randomness available for the secret cache")]
    NoRandomness,
    #[error(transparent)]
    Hash(#[from] HashError),
}

/// Verifies client secrets against their hashes, remembering recent successes.
pub struct SecretVerifier {
    /// Keyed digest of (client id, hash, secret) → verified. The secret itself is never stored.
    cache: moka::sync::Cache<[u8; 32], ()>,
    key: hmac::Key,
    /// Verified against when the client is unknown, so timing does not reveal which ids exist.
    dummy_hash: Arc<str>,
    /// argon2 needs ~19 MiB per verification: at most this many run at once.
    permits: Arc<Semaphore>,
}

impl SecretVerifier {
    pub fn new(settings: CacheSettings) -> Result<Self, VerifierError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map_err(|_| VerifierError::NoRandomness)?;
        let mut random = [0u8; 32];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| VerifierError::NoRandomness)?;
        let dummy_hash = hash_secret(&base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            random,
        ))?;
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(settings.max_entries)
                .time_to_live(settings.ttl)
                .build(),
            key,
            dummy_hash: dummy_hash.into(),
            permits: Arc::new(Semaphore::new(parallel)),
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

    /// True when `secret` matches `hash`. `hash` is `None` for an unknown client: the
    /// same work is done and the answer is false.
    pub async fn verify(
        &self,
        client_id: &str,
        secret: &str,
        hash: Option<&Secret<String>>,
    ) -> bool {
        let known = hash.is_some();
        let phc: Arc<str> = match hash {
            Some(h) => Arc::from(h.expose().as_str()),
            None => self.dummy_hash.clone(),
        };
        let key = self.cache_key(client_id, &phc, secret);
        if known && self.cache.get(&key).is_some() {
            return true;
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let secret = Secret::new(secret.to_string());
        let ok = tokio::task::spawn_blocking(move || verify_blocking(secret.expose(), &phc))
            .await
            .unwrap_or(false);
        if ok && known {
            self.cache.insert(key, ());
        }
        ok && known
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn verifies_caches_success_and_never_failure() {
        let v = SecretVerifier::new(CacheSettings {
            max_entries: 10,
            ttl: Duration::from_secs(60),
        })
        .unwrap();
        let hash = Secret::new(hash_secret("right").unwrap());
        assert!(!v.verify("c", "wrong", Some(&hash)).await);
        assert_eq!(v.cache.entry_count(), 0);
        assert!(v.verify("c", "right", Some(&hash)).await);
        v.cache.run_pending_tasks();
        assert_eq!(v.cache.entry_count(), 1);
        assert!(v.verify("c", "right", Some(&hash)).await);
        // The cached success is bound to the client id and the hash.
        assert!(!v.verify("other", "right", None).await);
        let rotated = Secret::new(hash_secret("new").unwrap());
        assert!(!v.verify("c", "right", Some(&rotated)).await);
        // An unknown client never verifies, even with the dummy hash's own input.
        assert!(!v.verify("ghost", "", None).await);
    }
}
