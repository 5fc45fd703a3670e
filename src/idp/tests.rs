//! Unit tests of the external-issuer module, no sockets (tests/idp.rs runs the real
//! servers): keys and tokens made here, shared by `parsing` (claim paths, Cache-Control,
//! JWKs) and `validation` (the checks, settings, kid-miss decisions).

mod parsing;
mod validation;

use super::jwks::{KeySet, Lookup, MAX_KEYS};
use super::lifetime::{Freshness, clamp, freshness, lifetime};
use super::refresh::{Coordinator, MissDecision};
use super::verify::{Failure, KeyMiss, check, read_header};
use super::*;
use crate::config::{KeySource, RefreshSettings};
use crate::domain::claim::ClaimPath;
use crate::domain::jose::JwsAlg;
use crate::jwt;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair as _, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use http::HeaderMap;
use serde_json::{Value, json};

// ---- Keys and tokens made here ----

enum TestKey {
    Ec(EcdsaKeyPair, JwsAlg),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl TestKey {
    fn es256() -> Self {
        TestKey::Ec(
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
            JwsAlg::ES256,
        )
    }

    fn es384() -> Self {
        TestKey::Ec(
            EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(),
            JwsAlg::ES384,
        )
    }

    fn rsa() -> Self {
        TestKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }

    fn ed() -> Self {
        TestKey::Ed(Ed25519KeyPair::generate().unwrap())
    }

    /// The public JWK, with `extra` members merged in.
    fn jwk(&self, extra: Value) -> Value {
        let mut jwk = match self {
            TestKey::Ec(k, alg) => {
                let point = k.public_key().as_ref();
                let len = (point.len() - 1) / 2;
                let crv = if *alg == JwsAlg::ES256 {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({"kty": "EC", "crv": crv,
                       "x": B64.encode(&point[1..1 + len]), "y": B64.encode(&point[1 + len..])})
            }
            TestKey::Rsa(k) => {
                let p = k.public_key();
                json!({"kty": "RSA",
                       "n": B64.encode(p.modulus().big_endian_without_leading_zero()),
                       "e": B64.encode(p.exponent().big_endian_without_leading_zero())})
            }
            TestKey::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(k.public_key().as_ref())})
            }
        };
        for (k, v) in extra.as_object().unwrap() {
            jwk[k] = v.clone();
        }
        jwk
    }

    fn sign(&self, alg: JwsAlg, header: Value, claims: Value) -> String {
        let mut h = json!({"alg": alg.as_str()});
        for (k, v) in header.as_object().unwrap() {
            h[k] = v.clone();
        }
        let input = format!(
            "{}.{}",
            B64.encode(h.to_string()),
            B64.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            TestKey::Ec(k, _) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            TestKey::Ed(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
            TestKey::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                let padding = if alg == JwsAlg::PS256 {
                    &RSA_PSS_SHA256 as &dyn aws_lc_rs::signature::RsaEncoding
                } else {
                    &RSA_PKCS1_SHA256
                };
                k.sign(padding, &rng, input.as_bytes(), &mut sig).unwrap();
                sig
            }
        };
        format!("{input}.{}", B64.encode(sig))
    }
}

fn set(keys: Vec<Value>, allowed: &[JwsAlg]) -> super::jwks::Parsed {
    KeySet::parse(json!({ "keys": keys }).to_string().as_bytes(), allowed).unwrap()
}

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://idp.example/realms/main";

fn settings() -> IssuerSettings {
    let mut s = IssuerSettings::new(
        "main",
        ISS,
        KeySource::Discovery,
        vec!["orders".to_string()],
    );
    s.algorithms = vec![JwsAlg::ES256, JwsAlg::RS256];
    s
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISS, "sub": "user-1", "aud": ["other", "orders"],
                       "exp": NOW + 300, "iat": NOW, "nbf": NOW, "jti": "j1",
                       "scope": "orders:read orders:write"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn run(s: &IssuerSettings, keys: Option<&KeySet>, token: &str) -> Result<ExternalToken, Failure> {
    let u = read_header(s, token).map_err(Failure::Rejected)?;
    check(s, &Arc::from("main"), keys, &u, NOW)
}

fn rejected(r: Rejection) -> Result<ExternalToken, Failure> {
    Err(Failure::Rejected(r))
}
