//! An external issuer's key set: the usable public keys of a fetched JWKS (RFC 7517), each
//! parsed once for every allowed algorithm it may verify. A JWK tollgate cannot or must not
//! use is skipped, never failing the set.

use crate::domain::jose::JwsAlg;
use crate::domain::jose::is_valid_kid;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, ParsedPublicKey,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512,
    RSA_PSS_2048_8192_SHA256, RSA_PSS_2048_8192_SHA384, RSA_PSS_2048_8192_SHA512,
    VerificationAlgorithm,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;

/// The most keys kept from one set: a kid-less token is tried against each key of its
/// algorithm, so the set's size bounds the work one token can cause.
pub(super) const MAX_KEYS: usize = 64;

/// The smallest RSA modulus accepted (RFC 8725 §3.5, NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;

/// One usable key.
struct Key {
    kid: Option<Box<str>>,
    /// The algorithms it verifies, each with the key parsed for it.
    verifiers: Vec<(JwsAlg, ParsedPublicKey)>,
}

/// The usable keys of one issuer's JWKS.
pub(super) struct KeySet {
    keys: Vec<Key>,
}

/// What looking a token's key up found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup {
    Verified,
    /// The key named by `kid` is there, but does not verify the signature or does not
    /// take this algorithm.
    BadSignature,
    /// No key has the token's `kid`; for a kid-less token, no key of its algorithm
    /// verifies it. A newer set might.
    Miss,
}

/// Why a document is not a key set at all.
#[derive(Debug, thiserror::Error)]
#[error("not a JWKS document ({{\"keys\": [...]}}): {0}")]
pub(super) struct NotAKeySet(serde_json::Error);

/// Why one JWK of a key set is skipped (the debug log says which and why).
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error("its kid is not 1-64 characters of A-Z a-z 0-9 - _ .")]
    BadKid,
    #[error("`use` is `{0}`, not `sig`")]
    NotForSigning(String),
    #[error("`key_ops` does not include `verify`")]
    NotForVerifying,
    #[error("algorithm `{0}` is not one tollgate verifies")]
    UnknownAlgorithm(String),
    #[error("not a valid {kty} key: {reason}")]
    Invalid { kty: String, reason: String },
    #[error("`alg` {alg} does not fit a {kty} key")]
    AlgorithmMismatch { alg: &'static str, kty: String },
    #[error("usable with none of the allowed algorithms")]
    NoAllowedAlgorithm,
    #[error("an RSA key of {0} bits (at least {MIN_RSA_BITS} are needed)")]
    RsaTooShort(usize),
    #[error("cannot encode the RSA public key")]
    RsaEncoding,
    #[error("an Ed25519 `x` must be 32 bytes")]
    Ed25519Length,
    #[error("curve `{0}` is not one tollgate verifies")]
    UnknownCurve(String),
    #[error("key type `{0}` is not one tollgate verifies")]
    UnknownKeyType(String),
    #[error("EC coordinates must be {0} bytes each")]
    EcLength(usize),
    #[error("`{0}` is missing")]
    Missing(&'static str),
    #[error("`{0}` is not base64url")]
    NotBase64(&'static str),
}

/// A parsed JWKS and what was skipped in it (for the debug log).
pub(super) struct Parsed {
    pub set: KeySet,
    pub skipped: Vec<String>,
}

impl KeySet {
    /// Parse a JWKS document. Fails only when it is not a `{"keys": [...]}` object; each
    /// JWK that is unusable, or usable with none of `allowed`, is skipped.
    pub(super) fn parse(body: &[u8], allowed: &[JwsAlg]) -> Result<Parsed, NotAKeySet> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let doc: Document = serde_json::from_slice(body).map_err(NotAKeySet)?;
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (i, value) in doc.keys.into_iter().enumerate() {
            let jwk = match Jwk::deserialize(value) {
                Ok(jwk) => jwk,
                Err(e) => {
                    skipped.push(format!("key #{i}: {e}"));
                    continue;
                }
            };
            let label = match &jwk.kid {
                Some(kid) => format!("key `{kid}`"),
                None => format!("key #{i}"),
            };
            if keys.len() == MAX_KEYS {
                skipped.push(format!("{label}: more than {MAX_KEYS} keys"));
                continue;
            }
            match jwk.usable(allowed) {
                Ok(key) => keys.push(key),
                Err(why) => skipped.push(format!("{label}: {why}")),
            }
        }
        Ok(Parsed {
            set: KeySet { keys },
            skipped,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verify `signature` over `input` with the key the token names (by `kid`), or, for a
    /// kid-less token, with any key of its algorithm.
    pub(super) fn verify(
        &self,
        kid: Option<&str>,
        alg: JwsAlg,
        input: &[u8],
        signature: &[u8],
    ) -> Lookup {
        let verifies = |key: &Key| {
            key.verifiers
                .iter()
                .any(|(a, k)| *a == alg && k.verify_sig(input, signature).is_ok())
        };
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid));
                let Some(first) = named.next() else {
                    return Lookup::Miss;
                };
                // Several keys may share a kid (one per algorithm).
                if verifies(first) || named.any(verifies) {
                    Lookup::Verified
                } else {
                    Lookup::BadSignature
                }
            }
            None if self.keys.iter().any(verifies) => Lookup::Verified,
            None => Lookup::Miss,
        }
    }
}

/// The members of a JWK tollgate reads; private members (`d`, `p`, ...) are ignored.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl Jwk {
    fn usable(self, allowed: &[JwsAlg]) -> Result<Key, Unusable> {
        if let Some(kid) = &self.kid
            && !is_valid_kid(kid)
        {
            return Err(Unusable::BadKid);
        }
        if let Some(u) = &self.use_
            && u != "sig"
        {
            return Err(Unusable::NotForSigning(u.clone()));
        }
        if let Some(ops) = &self.key_ops
            && !ops.iter().any(|o| o == "verify")
        {
            return Err(Unusable::NotForVerifying);
        }
        let named = match &self.alg {
            Some(a) => {
                Some(JwsAlg::from_jws(a).ok_or_else(|| Unusable::UnknownAlgorithm(a.clone()))?)
            }
            None => None,
        };
        let (algs, material) = self.material()?;
        let mut verifiers = Vec::new();
        for &(alg, verification) in algs {
            if named.is_some_and(|n| n != alg) || !allowed.contains(&alg) {
                continue;
            }
            let key =
                ParsedPublicKey::new(verification, &material).map_err(|e| Unusable::Invalid {
                    kty: self.kty.clone(),
                    reason: e.to_string(),
                })?;
            verifiers.push((alg, key));
        }
        if verifiers.is_empty() {
            return Err(match named {
                Some(n) if !algs.iter().any(|(a, _)| *a == n) => Unusable::AlgorithmMismatch {
                    alg: n.as_str(),
                    kty: self.kty,
                },
                _ => Unusable::NoAllowedAlgorithm,
            });
        }
        Ok(Key {
            kid: self.kid.map(Into::into),
            verifiers,
        })
    }

    /// The algorithms this kind of key verifies, and its public key in the form
    /// `ParsedPublicKey` takes.
    fn material(&self) -> Result<(&'static [Algorithm], Vec<u8>), Unusable> {
        match (self.kty.as_str(), self.crv.as_deref()) {
            ("RSA", _) => {
                let n = strip_zeros(decode(self.n.as_deref(), "n")?);
                let e = strip_zeros(decode(self.e.as_deref(), "e")?);
                let bits = n
                    .first()
                    .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
                if bits < MIN_RSA_BITS {
                    return Err(Unusable::RsaTooShort(bits));
                }
                let der = PublicKeyComponents { n, e }
                    .as_der()
                    .map_err(|_| Unusable::RsaEncoding)?;
                Ok((RSA, der.as_ref().to_vec()))
            }
            ("EC", Some("P-256")) => Ok((P256, self.ec_point(32)?)),
            ("EC", Some("P-384")) => Ok((P384, self.ec_point(48)?)),
            ("OKP", Some("Ed25519")) => {
                let x = decode(self.x.as_deref(), "x")?;
                if x.len() != 32 {
                    return Err(Unusable::Ed25519Length);
                }
                Ok((ED, x))
            }
            ("EC" | "OKP", crv) => Err(Unusable::UnknownCurve(crv.unwrap_or("(none)").to_string())),
            (kty, _) => Err(Unusable::UnknownKeyType(kty.to_string())),
        }
    }

    /// The uncompressed SEC1 point `04 || x || y`, each coordinate exactly `len` bytes.
    fn ec_point(&self, len: usize) -> Result<Vec<u8>, Unusable> {
        let x = decode(self.x.as_deref(), "x")?;
        let y = decode(self.y.as_deref(), "y")?;
        if x.len() != len || y.len() != len {
            return Err(Unusable::EcLength(len));
        }
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(4);
        point.extend(x);
        point.extend(y);
        Ok(point)
    }
}

type Algorithm = (JwsAlg, &'static dyn VerificationAlgorithm);

const RSA: &[Algorithm] = &[
    (JwsAlg::RS256, &RSA_PKCS1_2048_8192_SHA256),
    (JwsAlg::RS384, &RSA_PKCS1_2048_8192_SHA384),
    (JwsAlg::RS512, &RSA_PKCS1_2048_8192_SHA512),
    (JwsAlg::PS256, &RSA_PSS_2048_8192_SHA256),
    (JwsAlg::PS384, &RSA_PSS_2048_8192_SHA384),
    (JwsAlg::PS512, &RSA_PSS_2048_8192_SHA512),
];
const P256: &[Algorithm] = &[(JwsAlg::ES256, &ECDSA_P256_SHA256_FIXED)];
const P384: &[Algorithm] = &[(JwsAlg::ES384, &ECDSA_P384_SHA384_FIXED)];
const ED: &[Algorithm] = &[(JwsAlg::EdDSA, &ED25519)];

/// A base64url member, padded or not (some providers pad).
fn decode(value: Option<&str>, member: &'static str) -> Result<Vec<u8>, Unusable> {
    let value = value.ok_or(Unusable::Missing(member))?;
    B64.decode(value.trim_end_matches('='))
        .map_err(|_| Unusable::NotBase64(member))
}

fn strip_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}
