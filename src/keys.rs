//! Signing keys: load a PEM file or generate one and keep it in the state directory,
//! derive `kid` (RFC 7638 thumbprint), sign compact JWS, and publish the verification
//! key set as JWKS. Keys are parsed once; signing and verification reuse them.

mod material;
pub mod ring;
pub mod seal;

pub use material::{generate_pkcs8, thumbprint_kid};
use material::{
    private_key_from_pem, public_jwk, public_jwk_from_file, read_pem, signing_key, verifying_key,
    with_kid,
};

pub use ring::KeyRing;

use crate::config::{KeyFile, SigningKeySource, TokenSettings};
use crate::domain::jose::{Algorithm, JwsAlg};
use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ParsedPublicKey, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use std::path::PathBuf;

/// Why a private key cannot be read as the algorithm says.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    #[error("not a P-256 private key: {0}")]
    NotP256(KeyRejected),
    #[error("not an RSA private key: {0}")]
    NotRsa(KeyRejected),
    #[error("not an Ed25519 private key: {0}")]
    NotEd25519(KeyRejected),
    #[error("a `{tag}` PEM block is not a private key for {}", alg.as_str())]
    WrongBlock { tag: String, alg: Algorithm },
}

/// Why a key cannot be loaded, built, published or used to sign.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a PEM file: {source}", path.display())]
    NotPem {
        path: PathBuf,
        source: pem::PemError,
    },
    #[error("{}: {problem}", path.display())]
    InFile { path: PathBuf, problem: KeyProblem },
    #[error("{}: not a {} public key: {source}", path.display(), alg.as_str())]
    NotPublicKey {
        path: PathBuf,
        alg: Algorithm,
        source: jsonwebtoken::errors::Error,
    },
    #[error("{}: unusable public key: {source}", path.display())]
    UnusablePublicKey {
        path: PathBuf,
        source: jsonwebtoken::errors::Error,
    },
    #[error("{}: kid `{kid}` is already used by another key", path.display())]
    DuplicateKid { path: PathBuf, kid: String },
    #[error("a stored signing key: {0}")]
    Stored(KeyProblem),
    #[error("a generated key: {0}")]
    Generated(KeyProblem),
    #[error("no generated signing key is active (the store's key set is empty)")]
    NoActiveKey,
    #[error("the active signing key could not be loaded")]
    ActiveKeyMissing,
    #[error("cannot generate a {} key", .0.as_str())]
    Generate(Algorithm),
    #[error("{} signing failed", .0.as_str())]
    Sign(Algorithm),
    #[error("unexpected P-256 public key encoding")]
    EcEncoding,
    #[error("RSA keys must be at least 2048 bits")]
    RsaTooShort,
    #[error("cannot encode the RSA public key")]
    RsaEncoding,
    #[error("cannot compute the key thumbprint: {0}")]
    Thumbprint(jsonwebtoken::errors::Error),
    #[error("bad base64url in a JWK")]
    JwkBase64,
    #[error("key `{kid}` does not match algorithm {}", alg.as_str())]
    AlgorithmMismatch { kid: String, alg: Algorithm },
    #[error("key `{kid}` is not usable: {source}")]
    Unusable { kid: String, source: KeyRejected },
    #[error("cannot serialize JWKS: {0}")]
    Jwks(serde_json::Error),
}

enum PrivateKey {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// The key that signs issued tokens.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    key: PrivateKey,
    /// base64url of the constant JOSE header of access tokens (`typ: at+jwt`, RFC 9068),
    /// of ID tokens (`typ: JWT`) and of phantom tokens, computed once.
    header_b64: String,
    id_header_b64: String,
    internal_header_b64: String,
    rng: SystemRandom,
}

/// What a signed token is, as its `typ` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTyp {
    /// `at+jwt`: an access token (RFC 9068).
    Access,
    /// `JWT`: an OpenID Connect ID token.
    Id,
    /// `internal+jwt`: a phantom token, for an upstream only. Typed apart (RFC 8725
    /// §3.11) so that the gateway itself never takes one as an access token.
    Internal,
}

/// The `typ` of phantom tokens.
pub const INTERNAL_TYP: &str = "internal+jwt";

impl SigningKey {
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Sign `claims_json` as an access token: `header.claims.signature`.
    pub fn sign_compact(&self, claims_json: &[u8]) -> Result<String, KeyError> {
        self.sign_typed(claims_json, TokenTyp::Access)
    }

    /// Sign `claims_json` as a compact JWS of the given type.
    pub fn sign_typed(&self, claims_json: &[u8], typ: TokenTyp) -> Result<String, KeyError> {
        let header = match typ {
            TokenTyp::Access => &self.header_b64,
            TokenTyp::Id => &self.id_header_b64,
            TokenTyp::Internal => &self.internal_header_b64,
        };
        let mut out = String::with_capacity(header.len() + claims_json.len() * 4 / 3 + 360);
        out.push_str(header);
        out.push('.');
        B64.encode_string(claims_json, &mut out);
        let input = out.as_bytes();
        let signature: Vec<u8> = match &self.key {
            PrivateKey::Ec(k) => k
                .sign(&self.rng, input)
                .map_err(|_| KeyError::Sign(self.alg))?
                .as_ref()
                .to_vec(),
            PrivateKey::Ed(k) => k.sign(input).as_ref().to_vec(),
            PrivateKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &self.rng, input, &mut sig)
                    .map_err(|_| KeyError::Sign(self.alg))?;
                sig
            }
        };
        out.push('.');
        B64.encode_string(&signature, &mut out);
        Ok(out)
    }
}

/// A public key that verifies tokens.
pub struct VerifyingKey {
    kid: Box<str>,
    alg: Algorithm,
    key: ParsedPublicKey,
}

impl VerifyingKey {
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(signing_input, signature).is_ok()
    }
}

/// Why no key verifies a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMiss {
    /// The `kid` is not in the key set.
    UnknownKid,
    /// The key exists but is not for the token's `alg`.
    WrongAlgorithm,
}

/// The signing key and every key tokens may be verified with, plus their JWKS document.
pub struct KeySet {
    signing: SigningKey,
    verifying: Vec<VerifyingKey>,
    jwks: Bytes,
    /// When this set stops being right (a published key starts signing, or a retired one
    /// leaves): the holder builds the next set then.
    next_change: Option<i64>,
}

/// A generated private key, as the store's key set document holds it (decrypted).
#[derive(Clone)]
pub struct GeneratedKey {
    /// `None`: the RFC 7638 thumbprint.
    pub kid: Option<String>,
    pub alg: Algorithm,
    /// PKCS#8 DER.
    pub der: Vec<u8>,
    /// Signs from then on (until a newer key activates); published from the start.
    pub activate_at: i64,
    /// Leaves the set then (its last tokens have expired).
    pub retire_at: Option<i64>,
}

impl KeySet {
    /// Load the keys the settings name. `generated` is the PKCS#8 DER of the one generated
    /// signing key, used when no key file is configured.
    pub fn load(settings: &TokenSettings, generated: Option<&[u8]>) -> Result<Self, KeyError> {
        let keys: Vec<GeneratedKey> = match (&settings.signing_key, generated) {
            (SigningKeySource::Generated { algorithm, kid }, Some(der)) => vec![GeneratedKey {
                kid: kid.clone(),
                alg: *algorithm,
                der: der.to_vec(),
                activate_at: 0,
                retire_at: None,
            }],
            _ => Vec::new(),
        };
        Self::build(settings, &keys, 0)
    }

    /// The key set at `now`: with a generated signing key, the newest of `generated` that
    /// has activated signs, and every one not yet retired is published and verifies.
    pub fn build(
        settings: &TokenSettings,
        generated: &[GeneratedKey],
        now: i64,
    ) -> Result<Self, KeyError> {
        let mut next_change: Option<i64> = None;
        let mut soon = |t: i64| {
            if t > now {
                next_change = Some(next_change.map_or(t, |n| n.min(t)));
            }
        };
        let mut extra: Vec<(Jwk, Algorithm, String)> = Vec::new();
        let (signing, signing_jwk) = match &settings.signing_key {
            SigningKeySource::File(f) => {
                let pem = read_pem(&f.path)?;
                let key = private_key_from_pem(&pem, f.algorithm).map_err(|problem| {
                    KeyError::InFile {
                        path: f.path.clone(),
                        problem,
                    }
                })?;
                signing_key(key, f.algorithm, f.kid.clone())?
            }
            SigningKeySource::Generated { .. } => {
                let live: Vec<&GeneratedKey> = generated
                    .iter()
                    .filter(|k| k.retire_at.is_none_or(|r| r > now))
                    .collect();
                let signer = live
                    .iter()
                    .filter(|k| k.activate_at <= now)
                    .max_by_key(|k| k.activate_at)
                    .ok_or(KeyError::NoActiveKey)?;
                let mut chosen = None;
                for k in &live {
                    soon(k.activate_at);
                    if let Some(r) = k.retire_at {
                        soon(r);
                    }
                    let key =
                        private_key_from_pem(&pem::Pem::new("PRIVATE KEY", k.der.clone()), k.alg)
                            .map_err(KeyError::Stored)?;
                    if std::ptr::eq(*k, *signer) {
                        chosen = Some(signing_key(key, k.alg, k.kid.clone())?);
                    } else {
                        let jwk = with_kid(public_jwk(&key, k.alg)?, k.kid.clone())?;
                        let kid = jwk.common.key_id.clone().unwrap_or_default();
                        extra.push((jwk, k.alg, kid));
                    }
                }
                chosen.ok_or(KeyError::ActiveKeyMissing)?
            }
        };
        let mut jwks = vec![signing_jwk.clone()];
        let mut verifying = vec![verifying_key(&signing_jwk, signing.alg, &signing.kid)?];
        for (jwk, alg, kid) in extra {
            if verifying.iter().any(|v| *v.kid == *kid) {
                continue;
            }
            verifying.push(verifying_key(&jwk, alg, &kid)?);
            jwks.push(jwk);
        }
        for f in &settings.verification_keys {
            let jwk = public_jwk_from_file(f)?;
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            if verifying.iter().any(|v| *v.kid == *kid) {
                return Err(KeyError::DuplicateKid {
                    path: f.path.clone(),
                    kid,
                });
            }
            verifying.push(verifying_key(&jwk, f.algorithm, &kid)?);
            jwks.push(jwk);
        }
        let doc = serde_json::to_vec(&JwkSet { keys: jwks }).map_err(KeyError::Jwks)?;
        Ok(Self {
            signing,
            verifying,
            jwks: Bytes::from(doc),
            next_change,
        })
    }

    /// When the set must be built again (a key activates or retires).
    pub fn next_change(&self) -> Option<i64> {
        self.next_change
    }

    /// The kids of every published key.
    pub fn kids(&self) -> Vec<&str> {
        self.verifying.iter().map(|k| k.kid()).collect()
    }

    pub fn signing(&self) -> &SigningKey {
        &self.signing
    }

    /// The key for a token's `kid` and `alg`. Without a `kid`, the first key of that
    /// algorithm.
    pub fn find(&self, kid: Option<&str>, alg: JwsAlg) -> Result<&VerifyingKey, KeyMiss> {
        match kid {
            Some(kid) => {
                let key = self
                    .verifying
                    .iter()
                    .find(|k| &*k.kid == kid)
                    .ok_or(KeyMiss::UnknownKid)?;
                if key.alg.jws() == alg {
                    Ok(key)
                } else {
                    Err(KeyMiss::WrongAlgorithm)
                }
            }
            None => self
                .verifying
                .iter()
                .find(|k| k.alg.jws() == alg)
                .ok_or(KeyMiss::UnknownKid),
        }
    }

    /// The JWKS document (RFC 7517 §5), serialized once.
    pub fn jwks_json(&self) -> &Bytes {
        &self.jwks
    }
}

/// Load the key files the settings name, without generating anything (`tollgate -t`).
pub fn check_files(settings: &TokenSettings) -> Result<(), KeyError> {
    if let SigningKeySource::File(f) = &settings.signing_key {
        let pem = read_pem(&f.path)?;
        let key = private_key_from_pem(&pem, f.algorithm).map_err(|problem| KeyError::InFile {
            path: f.path.clone(),
            problem,
        })?;
        signing_key(key, f.algorithm, f.kid.clone())?;
    }
    for f in &settings.verification_keys {
        let jwk = public_jwk_from_file(f)?;
        verifying_key(
            &jwk,
            f.algorithm,
            jwk.common.key_id.as_deref().unwrap_or_default(),
        )?;
    }
    Ok(())
}

/// The name under which the store keeps the generated key for `alg`.
pub fn generated_key_name(alg: Algorithm) -> String {
    format!("signing-{}", alg.as_str().to_ascii_lowercase())
}

#[cfg(test)]
mod tests;
