//! The client side of DPoP, for operators and load tests (`tollgate dpop key`, `tollgate
//! dpop proof`): a P-256 key in a PEM file, and proofs made with it as RFC 9449 §4.2
//! describes: the public key in the header, a fresh `jti` and the current `iat`.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// Why a key or a proof cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientKeyError {
    #[error("no randomness available")]
    Random,
    #[error("not a PEM file: {0}")]
    Pem(#[from] pem::PemError),
    #[error("not a P-256 private key in PKCS#8 (`tollgate dpop key` makes one)")]
    NotP256,
}

/// A new P-256 private key, PKCS#8 PEM.
pub fn generate_key() -> Result<String, ClientKeyError> {
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .and_then(|k| k.to_pkcs8v1())
        .map_err(|_| ClientKeyError::Random)?;
    Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", key.as_ref())))
}

/// A client's DPoP key, read from its PEM.
pub struct ClientKey {
    pair: EcdsaKeyPair,
    /// The proof header, base64url (the same for every proof of this key).
    header: String,
    /// RFC 7638 thumbprint, base64url: what `cnf.jkt` of its tokens says.
    pub jkt: String,
}

impl ClientKey {
    pub fn from_pem(text: &str) -> Result<Self, ClientKeyError> {
        let block = pem::parse(text)?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, block.contents())
            .map_err(|_| ClientKeyError::NotP256)?;
        let point = pair.public_key().as_ref();
        let (x, y) = (B64.encode(&point[1..33]), B64.encode(&point[33..65]));
        let header = serde_json::json!({
            "typ": "dpop+jwt",
            "alg": "ES256",
            "jwk": {"kty": "EC", "crv": "P-256", "x": x, "y": y},
        });
        let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        Ok(Self {
            pair,
            header: B64.encode(header.to_string()),
            jkt: super::proof::token_hash(&thumbprint),
        })
    }

    /// A proof for `method` `url`, made at `now`; `token`: the access token it goes with
    /// (`ath`); `nonce`: the server's nonce.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        nonce: Option<&str>,
        now: i64,
    ) -> Result<String, ClientKeyError> {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| ClientKeyError::Random)?;
        let mut claims = serde_json::json!({
            "jti": B64.encode(jti),
            "htm": method,
            "htu": url,
            "iat": now,
        });
        if let Some(t) = token {
            claims["ath"] = super::proof::token_hash(t).into();
        }
        if let Some(n) = nonce {
            claims["nonce"] = n.into();
        }
        let input = format!("{}.{}", self.header, B64.encode(claims.to_string()));
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| ClientKeyError::Random)?;
        Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
    }
}
