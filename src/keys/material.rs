//! Key material: private keys read from PEM files or generated (PKCS#8), their public
//! JWKs (RFC 7517) and RFC 7638 thumbprints, and the verifier built from a JWK, so file
//! keys and published keys can never disagree.

use super::{KeyError, KeyProblem, PrivateKey, SigningKey, VerifyingKey};
use crate::config::KeyFile;
use crate::domain::jose::Algorithm;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair as _, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse, RSAKeyParameters, RSAKeyType, ThumbprintHash,
};
use std::path::Path;

pub(super) fn read_pem(path: &Path) -> Result<pem::Pem, KeyError> {
    let text = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    pem::parse(&text).map_err(|source| KeyError::NotPem {
        path: path.to_path_buf(),
        source,
    })
}

pub(super) fn private_key_from_pem(
    pem: &pem::Pem,
    alg: Algorithm,
) -> Result<PrivateKey, KeyProblem> {
    let der = pem.contents();
    match (alg, pem.tag()) {
        (Algorithm::ES256, "PRIVATE KEY" | "EC PRIVATE KEY") => {
            EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .map(PrivateKey::Ec)
                .map_err(KeyProblem::NotP256)
        }
        (Algorithm::RS256, "PRIVATE KEY") => RsaKeyPair::from_pkcs8(der)
            .map(PrivateKey::Rsa)
            .map_err(KeyProblem::NotRsa),
        (Algorithm::RS256, "RSA PRIVATE KEY") => RsaKeyPair::from_der(der)
            .map(PrivateKey::Rsa)
            .map_err(KeyProblem::NotRsa),
        (Algorithm::EdDSA, "PRIVATE KEY") => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(PrivateKey::Ed)
            .map_err(KeyProblem::NotEd25519),
        (alg, tag) => Err(KeyProblem::WrongBlock {
            tag: tag.to_string(),
            alg,
        }),
    }
}

/// A new private key for `alg`, PKCS#8 DER.
pub fn generate_pkcs8(alg: Algorithm) -> Result<Vec<u8>, KeyError> {
    let failed = |_| KeyError::Generate(alg);
    Ok(match alg {
        Algorithm::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|k| k.to_pkcs8v1())
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        Algorithm::EdDSA => Ed25519KeyPair::generate()
            .and_then(|k| k.to_pkcs8v1())
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        Algorithm::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
            .and_then(|k| k.as_der())
            .map_err(failed)?
            .as_ref()
            .to_vec(),
    })
}

pub(super) fn jwk(alg: Algorithm, params: AlgorithmParameters) -> Jwk {
    Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(jwk_algorithm(alg)),
            ..Default::default()
        },
        algorithm: params,
    }
}

pub(super) fn ec_params(point: &[u8]) -> Result<AlgorithmParameters, KeyError> {
    if point.len() != 65 || point[0] != 4 {
        return Err(KeyError::EcEncoding);
    }
    Ok(AlgorithmParameters::EllipticCurve(
        EllipticCurveKeyParameters {
            key_type: EllipticCurveKeyType::EC,
            curve: EllipticCurve::P256,
            x: B64.encode(&point[1..33]),
            y: B64.encode(&point[33..65]),
        },
    ))
}

pub(super) fn public_jwk(key: &PrivateKey, alg: Algorithm) -> Result<Jwk, KeyError> {
    let params = match key {
        PrivateKey::Ec(k) => ec_params(k.public_key().as_ref())?,
        PrivateKey::Ed(k) => AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: B64.encode(k.public_key().as_ref()),
        }),
        PrivateKey::Rsa(k) => {
            if k.public_modulus_len() < 256 {
                return Err(KeyError::RsaTooShort);
            }
            let public = k.public_key();
            AlgorithmParameters::RSA(RSAKeyParameters {
                key_type: RSAKeyType::RSA,
                n: B64.encode(public.modulus().big_endian_without_leading_zero()),
                e: B64.encode(public.exponent().big_endian_without_leading_zero()),
            })
        }
    };
    Ok(jwk(alg, params))
}

pub(super) fn with_kid(mut jwk: Jwk, kid: Option<String>) -> Result<Jwk, KeyError> {
    let kid = match kid {
        Some(k) => k,
        None => jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(KeyError::Thumbprint)?,
    };
    jwk.common.key_id = Some(kid);
    Ok(jwk)
}

pub(super) fn signing_key(
    key: PrivateKey,
    alg: Algorithm,
    kid: Option<String>,
) -> Result<(SigningKey, Jwk), KeyError> {
    let jwk = with_kid(public_jwk(&key, alg)?, kid)?;
    let kid = jwk.common.key_id.clone().unwrap_or_default();
    let header = serde_json::json!({ "alg": alg.as_str(), "typ": "at+jwt", "kid": kid });
    let header_b64 = B64.encode(header.to_string());
    let id_header = serde_json::json!({ "alg": alg.as_str(), "typ": "JWT", "kid": kid });
    let id_header_b64 = B64.encode(id_header.to_string());
    let internal_header =
        serde_json::json!({ "alg": alg.as_str(), "typ": super::INTERNAL_TYP, "kid": kid });
    let internal_header_b64 = B64.encode(internal_header.to_string());
    Ok((
        SigningKey {
            kid,
            alg,
            key,
            header_b64,
            id_header_b64,
            internal_header_b64,
            rng: SystemRandom::new(),
        },
        jwk,
    ))
}

/// The `alg` of a JWK published for such a key.
pub(super) fn jwk_algorithm(alg: Algorithm) -> KeyAlgorithm {
    match alg {
        Algorithm::ES256 => KeyAlgorithm::ES256,
        Algorithm::RS256 => KeyAlgorithm::RS256,
        Algorithm::EdDSA => KeyAlgorithm::EdDSA,
    }
}

/// The same algorithm as `jsonwebtoken` names it (reading public key files).
pub(super) fn jwt_algorithm(alg: Algorithm) -> jsonwebtoken::Algorithm {
    match alg {
        Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
    }
}

/// The public JWK of a verification key file (private or public PEM).
pub(super) fn public_jwk_from_file(f: &KeyFile) -> Result<Jwk, KeyError> {
    let pem = read_pem(&f.path)?;
    let jwk = if pem.tag() == "PUBLIC KEY" || pem.tag() == "RSA PUBLIC KEY" {
        let text = pem::encode(&pem);
        let decoding = match f.algorithm {
            Algorithm::ES256 => jsonwebtoken::DecodingKey::from_ec_pem(text.as_bytes()),
            Algorithm::RS256 => jsonwebtoken::DecodingKey::from_rsa_pem(text.as_bytes()),
            Algorithm::EdDSA => jsonwebtoken::DecodingKey::from_ed_pem(text.as_bytes()),
        }
        .map_err(|source| KeyError::NotPublicKey {
            path: f.path.clone(),
            alg: f.algorithm,
            source,
        })?;
        let mut jwk = Jwk::from_decoding_key(&decoding, Some(jwt_algorithm(f.algorithm))).map_err(
            |source| KeyError::UnusablePublicKey {
                path: f.path.clone(),
                source,
            },
        )?;
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk
    } else {
        public_jwk(
            &private_key_from_pem(&pem, f.algorithm).map_err(|problem| KeyError::InFile {
                path: f.path.clone(),
                problem,
            })?,
            f.algorithm,
        )?
    };
    with_kid(jwk, f.kid.clone())
}

/// Build the verifier from the public JWK, so file keys and published keys can never
/// disagree.
pub(super) fn verifying_key(
    jwk: &Jwk,
    alg: Algorithm,
    kid: &str,
) -> Result<VerifyingKey, KeyError> {
    let decode = |s: &str| B64.decode(s).map_err(|_| KeyError::JwkBase64);
    let key = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => {
            let mut point = vec![4u8];
            point.extend(decode(&p.x)?);
            point.extend(decode(&p.y)?);
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        }
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            ParsedPublicKey::new(&ED25519, decode(&p.x)?)
        }
        (AlgorithmParameters::RSA(p), Algorithm::RS256) => {
            let components = PublicKeyComponents {
                n: decode(&p.n)?,
                e: decode(&p.e)?,
            };
            let spki = components.as_der().map_err(|_| KeyError::RsaEncoding)?;
            ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, spki.as_ref())
        }
        _ => {
            return Err(KeyError::AlgorithmMismatch {
                kid: kid.to_string(),
                alg,
            });
        }
    }
    .map_err(|source| KeyError::Unusable {
        kid: kid.to_string(),
        source,
    })?;
    Ok(VerifyingKey {
        kid: kid.into(),
        alg,
        key,
    })
}

/// The RFC 7638 thumbprint `kid` of a generated key.
pub fn thumbprint_kid(alg: Algorithm, der: &[u8]) -> Result<String, KeyError> {
    let key = private_key_from_pem(&pem::Pem::new("PRIVATE KEY", der.to_vec()), alg)
        .map_err(KeyError::Generated)?;
    let jwk = with_kid(public_jwk(&key, alg)?, None)?;
    Ok(jwk.common.key_id.unwrap_or_default())
}
