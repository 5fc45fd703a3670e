//! Key loading, generation, kid derivation, signing and JWKS.

use super::*;
use crate::config::{SigningKeySource, TokenSettings};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use material::jwt_algorithm;
use std::time::Duration;

fn settings(source: SigningKeySource, extra: Vec<KeyFile>) -> TokenSettings {
    TokenSettings {
        signing_key: source,
        verification_keys: extra,
        leeway: Duration::from_secs(60),
        access_token_lifetime: Duration::from_secs(900),
        refresh_grace_period: Duration::from_secs(10),
        rotation: crate::config::RotationSettings {
            every: None,
            publish_ahead: Duration::from_secs(600),
        },
        jwks_max_age: Duration::from_secs(300),
        session_lifetime: Duration::from_secs(3600),
    }
}

fn roundtrip(alg: Algorithm) {
    let der = generate_pkcs8(alg).unwrap();
    let s = settings(
        SigningKeySource::Generated {
            algorithm: alg,
            kid: None,
        },
        vec![],
    );
    let keys = KeySet::load(&s, Some(&der)).unwrap();
    let token = keys.signing().sign_compact(br#"{"sub":"x"}"#).unwrap();
    let (input, sig) = token.rsplit_once('.').unwrap();
    let key = keys.find(Some(keys.signing().kid()), alg.jws()).unwrap();
    assert!(key.verify(input.as_bytes(), &B64.decode(sig).unwrap()));
    assert!(!key.verify(b"tampered", &B64.decode(sig).unwrap()));

    // The same stored key gives the same kid after a restart.
    let again = KeySet::load(&s, Some(&der)).unwrap();
    assert_eq!(again.signing().kid(), keys.signing().kid());

    // JWKS carries the key under its kid, and jsonwebtoken verifies our token with it.
    let set: JwkSet = serde_json::from_slice(keys.jwks_json()).unwrap();
    let jwk = set.find(keys.signing().kid()).unwrap();
    let dk = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(jwt_algorithm(alg));
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_aud = false;
    let data = jsonwebtoken::decode::<serde_json::Value>(&token, &dk, &v).unwrap();
    assert_eq!(data.claims["sub"], "x");
    assert_eq!(data.header.kid.as_deref(), Some(keys.signing().kid()));
}

#[test]
fn es256_keys_sign_and_verify() {
    roundtrip(Algorithm::ES256);
}

#[test]
fn eddsa_keys_sign_and_verify() {
    roundtrip(Algorithm::EdDSA);
}

#[test]
fn rs256_keys_sign_and_verify() {
    roundtrip(Algorithm::RS256);
}

#[test]
fn verification_keys_from_public_pem_are_published_and_used() {
    let dir = tempfile::tempdir().unwrap();
    // An old RS256 key, given to the gateway as a public key only.
    let old = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let spki = old.public_key().as_der().unwrap();
    let pub_path = dir.path().join("old.pub.pem");
    std::fs::write(
        &pub_path,
        pem::encode(&pem::Pem::new("PUBLIC KEY", spki.as_ref().to_vec())),
    )
    .unwrap();
    let s = settings(
        SigningKeySource::Generated {
            algorithm: Algorithm::ES256,
            kid: Some("current".into()),
        },
        vec![KeyFile {
            path: pub_path,
            algorithm: Algorithm::RS256,
            kid: Some("old".into()),
        }],
    );
    let der = generate_pkcs8(Algorithm::ES256).unwrap();
    let keys = KeySet::load(&s, Some(&der)).unwrap();
    let set: JwkSet = serde_json::from_slice(keys.jwks_json()).unwrap();
    assert!(set.find("current").is_some() && set.find("old").is_some());

    let msg = b"header.claims";
    let mut sig = vec![0u8; old.public_modulus_len()];
    old.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
        .unwrap();
    assert!(
        keys.find(Some("old"), JwsAlg::RS256)
            .unwrap()
            .verify(msg, &sig)
    );
    assert_eq!(
        keys.find(Some("old"), JwsAlg::ES256).err(),
        Some(KeyMiss::WrongAlgorithm)
    );
    assert_eq!(
        keys.find(Some("nope"), JwsAlg::ES256).err(),
        Some(KeyMiss::UnknownKid)
    );
    assert_eq!(keys.find(None, JwsAlg::RS256).unwrap().kid(), "old");
}

#[test]
fn pem_of_the_wrong_kind_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    let der = generate_pkcs8(Algorithm::EdDSA).unwrap();
    std::fs::write(&path, pem::encode(&pem::Pem::new("PRIVATE KEY", der))).unwrap();
    let s = settings(
        SigningKeySource::File(KeyFile {
            path: path.clone(),
            algorithm: Algorithm::ES256,
            kid: None,
        }),
        vec![],
    );
    let e = KeySet::load(&s, None).err().unwrap().to_string();
    assert!(e.contains("not a P-256 private key"), "{e}");
    std::fs::write(&path, "garbage").unwrap();
    let e = KeySet::load(&s, None).err().unwrap().to_string();
    assert!(e.contains("not a PEM file"), "{e}");
}
