//! The public key a JWK describes (RFC 7517, RFC 7518 §6, RFC 8037), in the form
//! aws-lc-rs verifies with, and the algorithms each kind of key verifies. Shared by the
//! external issuers' key sets and DPoP proofs, which carry their key in the header.

use crate::domain::jose::JwsAlg;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256,
    RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512, RSA_PSS_2048_8192_SHA256,
    RSA_PSS_2048_8192_SHA384, RSA_PSS_2048_8192_SHA512, VerificationAlgorithm,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// The smallest RSA modulus accepted (RFC 8725 §3.5, NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;

/// A JWS algorithm and the aws-lc-rs verification it runs.
pub type Verification = (JwsAlg, &'static dyn VerificationAlgorithm);

pub const RSA: &[Verification] = &[
    (JwsAlg::RS256, &RSA_PKCS1_2048_8192_SHA256),
    (JwsAlg::RS384, &RSA_PKCS1_2048_8192_SHA384),
    (JwsAlg::RS512, &RSA_PKCS1_2048_8192_SHA512),
    (JwsAlg::PS256, &RSA_PSS_2048_8192_SHA256),
    (JwsAlg::PS384, &RSA_PSS_2048_8192_SHA384),
    (JwsAlg::PS512, &RSA_PSS_2048_8192_SHA512),
];
pub const P256: &[Verification] = &[(JwsAlg::ES256, &ECDSA_P256_SHA256_FIXED)];
pub const P384: &[Verification] = &[(JwsAlg::ES384, &ECDSA_P384_SHA384_FIXED)];
pub const ED: &[Verification] = &[(JwsAlg::EdDSA, &ED25519)];

/// The public members of a JWK.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublicMembers<'a> {
    pub kty: &'a str,
    pub crv: Option<&'a str>,
    pub n: Option<&'a str>,
    pub e: Option<&'a str>,
    pub x: Option<&'a str>,
    pub y: Option<&'a str>,
}

/// Why a JWK describes no key tollgate verifies with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
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

impl PublicMembers<'_> {
    /// The algorithms this kind of key verifies, and its public key in the form
    /// `ParsedPublicKey` takes. Members may be padded (some providers pad).
    pub fn material(&self) -> Result<(&'static [Verification], Vec<u8>), KeyProblem> {
        match (self.kty, self.crv) {
            ("RSA", _) => {
                let n = strip_zeros(decode(self.n, "n")?);
                let e = strip_zeros(decode(self.e, "e")?);
                let bits = n
                    .first()
                    .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
                if bits < MIN_RSA_BITS {
                    return Err(KeyProblem::RsaTooShort(bits));
                }
                let der = PublicKeyComponents { n, e }
                    .as_der()
                    .map_err(|_| KeyProblem::RsaEncoding)?;
                Ok((RSA, der.as_ref().to_vec()))
            }
            ("EC", Some("P-256")) => Ok((P256, self.ec_point(32)?)),
            ("EC", Some("P-384")) => Ok((P384, self.ec_point(48)?)),
            ("OKP", Some("Ed25519")) => {
                let x = decode(self.x, "x")?;
                if x.len() != 32 {
                    return Err(KeyProblem::Ed25519Length);
                }
                Ok((ED, x))
            }
            ("EC" | "OKP", crv) => Err(KeyProblem::UnknownCurve(
                crv.unwrap_or("(none)").to_string(),
            )),
            (kty, _) => Err(KeyProblem::UnknownKeyType(kty.to_string())),
        }
    }

    /// The uncompressed SEC1 point `04 || x || y`, each coordinate exactly `len` bytes.
    fn ec_point(&self, len: usize) -> Result<Vec<u8>, KeyProblem> {
        let x = decode(self.x, "x")?;
        let y = decode(self.y, "y")?;
        if x.len() != len || y.len() != len {
            return Err(KeyProblem::EcLength(len));
        }
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(4);
        point.extend(x);
        point.extend(y);
        Ok(point)
    }

    /// The RFC 7638 thumbprint input: the required members in lexicographic order, no
    /// white space. `None` for a key type without one here.
    pub fn thumbprint_input(&self) -> Option<String> {
        match self.kty {
            "EC" => Some(format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                self.crv?, self.x?, self.y?
            )),
            "OKP" => Some(format!(
                r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
                self.crv?, self.x?
            )),
            "RSA" => Some(format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                self.e?, self.n?
            )),
            _ => None,
        }
    }
}

/// A base64url member, padded or not.
fn decode(value: Option<&str>, member: &'static str) -> Result<Vec<u8>, KeyProblem> {
    let value = value.ok_or(KeyProblem::Missing(member))?;
    B64.decode(value.trim_end_matches('='))
        .map_err(|_| KeyProblem::NotBase64(member))
}

fn strip_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    bytes.drain(..zeros);
    bytes
}
