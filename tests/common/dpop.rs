//! DPoP proofs (RFC 9449 §4.2) made the way a client makes them: a fresh key pair, its
//! public JWK in every proof header, a fresh `jti` and the current `iat` per proof.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

enum Pair {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A client's DPoP key.
pub struct DpopKey {
    pair: Pair,
    /// The public JWK, as proofs carry it.
    pub jwk: Value,
    /// Its RFC 7638 thumbprint: what `cnf.jkt` of its tokens says.
    pub jkt: String,
}

/// What a proof says, for the claims a test changes.
#[derive(Clone, Default)]
pub struct ProofFor<'a> {
    pub htm: &'a str,
    pub htu: &'a str,
    pub token: Option<&'a str>,
    pub nonce: Option<&'a str>,
}

fn sha256_b64(data: &[u8]) -> String {
    B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

impl DpopKey {
    /// An ES256 (P-256) key.
    pub fn es256() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let (x, y) = (B64.encode(&point[1..33]), B64.encode(&point[33..65]));
        let jkt =
            sha256_b64(format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#).as_bytes());
        DpopKey {
            pair: Pair::Es256(pair),
            jwk: json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            jkt,
        }
    }

    /// An EdDSA (Ed25519) key.
    pub fn ed25519() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let x = B64.encode(pair.public_key().as_ref());
        let jkt = sha256_b64(format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#).as_bytes());
        DpopKey {
            pair: Pair::Ed25519(pair),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
            jkt,
        }
    }

    pub fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Es256(_) => "ES256",
            Pair::Ed25519(_) => "EdDSA",
        }
    }

    /// The standard header of this key's proofs.
    pub fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk})
    }

    /// The claims of a fresh proof for `p`, issued now.
    pub fn claims(&self, p: &ProofFor<'_>) -> Value {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).unwrap();
        let mut c = json!({
            "jti": B64.encode(jti),
            "htm": p.htm,
            "htu": p.htu,
            "iat": super::unix_now(),
        });
        if let Some(t) = p.token {
            c["ath"] = sha256_b64(t.as_bytes()).into();
        }
        if let Some(n) = p.nonce {
            c["nonce"] = n.into();
        }
        c
    }

    /// A fresh proof for `p`.
    pub fn proof(&self, p: &ProofFor<'_>) -> String {
        self.sign(&self.header(), &self.claims(p))
    }

    /// Sign any header and claims with this key (attack tests).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = match &self.pair {
            Pair::Es256(p) => p
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            Pair::Ed25519(p) => p.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", B64.encode(sig))
    }
}

/// The `cnf.jkt` of a JWT (its claims, unverified: the gateway verified it).
pub fn jkt_of(jwt: &str) -> Option<String> {
    let claims = jwt.split('.').nth(1)?;
    let v: Value = serde_json::from_slice(&B64.decode(claims).ok()?).ok()?;
    v["cnf"]["jkt"].as_str().map(str::to_string)
}
