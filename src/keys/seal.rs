//! Private keys at rest: sealed with AES-256-GCM under the key from
//! `store.encryption_key_file` (the key id as associated data, so a sealed key cannot be
//! passed off under another id), or kept as plain DER where no key is configured (the
//! embedded store, a file readable only by the gateway's user).

use aws_lc_rs::aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

/// A private key as the key set document stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SealedKey {
    Sealed {
        /// Always `A256GCM`.
        enc: String,
        nonce: String,
        ciphertext: String,
    },
    Plain {
        der: String,
    },
}

/// Why a private key cannot be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot use the store encryption key")]
    BadKey,
    #[error("cannot encrypt a signing key")]
    Encrypt,
    #[error("stored key `{0}` is not base64url")]
    NotBase64(String),
    #[error("stored key `{kid}` is sealed with unknown `{enc}`")]
    UnknownEncryption { kid: String, enc: String },
    #[error(
        "stored key `{0}` is encrypted: set store.encryption_key_file to the key the cluster uses"
    )]
    NoKey(String),
    #[error("stored key `{0}` has a bad nonce")]
    BadNonce(String),
    #[error(
        "stored key `{0}` does not decrypt: store.encryption_key_file is not the key it was sealed with"
    )]
    WrongKey(String),
}

/// Seals and opens private keys.
pub struct Sealer {
    key: Option<RandomizedNonceKey>,
}

impl Sealer {
    pub fn new(key: Option<&[u8; 32]>) -> Result<Self, SealError> {
        let key = key
            .map(|k| RandomizedNonceKey::new(&AES_256_GCM, k))
            .transpose()
            .map_err(|_| SealError::BadKey)?;
        Ok(Self { key })
    }

    pub fn seals(&self) -> bool {
        self.key.is_some()
    }

    pub fn seal(&self, kid: &str, der: &[u8]) -> Result<SealedKey, SealError> {
        let Some(key) = &self.key else {
            return Ok(SealedKey::Plain {
                der: B64.encode(der),
            });
        };
        let mut buf = der.to_vec();
        let nonce = key
            .seal_in_place_append_tag(Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| SealError::Encrypt)?;
        Ok(SealedKey::Sealed {
            enc: "A256GCM".into(),
            nonce: B64.encode(nonce.as_ref()),
            ciphertext: B64.encode(&buf),
        })
    }

    pub fn open(&self, kid: &str, sealed: &SealedKey) -> Result<Vec<u8>, SealError> {
        match sealed {
            SealedKey::Plain { der } => B64
                .decode(der)
                .map_err(|_| SealError::NotBase64(kid.to_string())),
            SealedKey::Sealed {
                enc,
                nonce,
                ciphertext,
            } => {
                if enc != "A256GCM" {
                    return Err(SealError::UnknownEncryption {
                        kid: kid.to_string(),
                        enc: enc.clone(),
                    });
                }
                let Some(key) = &self.key else {
                    return Err(SealError::NoKey(kid.to_string()));
                };
                let nonce = B64
                    .decode(nonce)
                    .ok()
                    .and_then(|n| Nonce::try_assume_unique_for_key(&n).ok())
                    .ok_or_else(|| SealError::BadNonce(kid.to_string()))?;
                let mut buf = B64
                    .decode(ciphertext)
                    .map_err(|_| SealError::NotBase64(kid.to_string()))?;
                let plain = key
                    .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
                    .map_err(|_| SealError::WrongKey(kid.to_string()))?;
                Ok(plain.to_vec())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_keys_open_only_with_their_key_and_kid() {
        let s = Sealer::new(Some(&[7u8; 32])).unwrap();
        let sealed = s.seal("k1", b"private der").unwrap();
        let text = serde_json::to_string(&sealed).unwrap();
        assert!(!text.contains(&B64.encode(b"private der")), "{text}");
        assert_eq!(s.open("k1", &sealed).unwrap(), b"private der");
        assert!(
            s.open("k2", &sealed)
                .unwrap_err()
                .to_string()
                .contains("does not decrypt")
        );
        let other = Sealer::new(Some(&[8u8; 32])).unwrap();
        assert!(other.open("k1", &sealed).is_err());
        let none = Sealer::new(None).unwrap();
        assert!(
            none.open("k1", &sealed)
                .unwrap_err()
                .to_string()
                .contains("encryption_key_file")
        );
        // Without a key, keys are stored plain (and a sealer with a key still reads them).
        let plain = none.seal("k1", b"der").unwrap();
        assert!(matches!(plain, SealedKey::Plain { .. }));
        assert_eq!(s.open("k1", &plain).unwrap(), b"der");
        let back: SealedKey = serde_json::from_str(&text).unwrap();
        assert_eq!(back, sealed);
    }
}
