//! Secrets: a redacting wrapper for values that can be used but never printed, and the
//! argon2 hashes client secrets and passwords are configured as.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use std::fmt;

/// A secret value (password hash, client secret, token) that never reaches a log.
///
/// `Debug` and `Display` print `[redacted]`; the value is reachable only through
/// [`Secret::expose`], so every place that reads it is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// Borrow the secret value. Call sites must not log what they get.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a configured hash is refused, or a secret cannot be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("not a PHC hash string ({0}); create one with `tollgate hash-secret`")]
    NotPhc(argon2::password_hash::Error),
    #[error("`{0}` hashes are not accepted; use argon2id (`tollgate hash-secret`)")]
    NotArgon2(String),
    #[error("cannot hash the secret: {0}")]
    Hash(argon2::password_hash::Error),
}

/// Check that a configured hash is an argon2 PHC string.
pub fn check_hash(phc: &str) -> Result<(), HashError> {
    let parsed = PasswordHash::new(phc).map_err(HashError::NotPhc)?;
    match parsed.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => Ok(()),
        other => Err(HashError::NotArgon2(other.to_string())),
    }
}

/// Whether `secret` matches the PHC string `phc` (blocking: argon2 takes a core for a while).
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Hash a secret with argon2id and the default (OWASP) parameters.
pub fn hash_secret(secret: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(HashError::Hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new(String::from("hunter2"));
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
        let nested = Some(s);
        assert!(!format!("{nested:?}").contains("hunter2"));
    }

    #[test]
    fn hashes_are_checked_for_kind() {
        let h = hash_secret("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert_eq!(check_hash(&h), Ok(()));
        assert!(
            check_hash("plain-text")
                .unwrap_err()
                .to_string()
                .contains("hash-secret")
        );
        assert!(check_hash("$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E").unwrap_err().to_string().contains("not accepted"));
    }
}
