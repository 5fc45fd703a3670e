//! An external issuer's key set: the usable public keys of a fetched JWKS (RFC 7517), each
//! parsed once for every allowed algorithm it may verify. A JWK tollgate cannot or must not
//! use is skipped, never failing the set.

use crate::domain::jose::JwsAlg;
use crate::domain::jose::is_valid_kid;
use crate::domain::jwk::{KeyProblem, PublicMembers};
use aws_lc_rs::signature::ParsedPublicKey;
use serde::Deserialize;

/// The most keys kept from one set: a kid-less token is tried against each key of its
/// algorithm, so the set's size bounds the work one token can cause.
pub(super) const MAX_KEYS: usize = 64;

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
    #[error(transparent)]
    Key(#[from] KeyProblem),
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
        let (algs, material) = PublicMembers {
            kty: &self.kty,
            crv: self.crv.as_deref(),
            n: self.n.as_deref(),
            e: self.e.as_deref(),
            x: self.x.as_deref(),
            y: self.y.as_deref(),
        }
        .material()?;
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
}
