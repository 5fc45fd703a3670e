//! JOSE names: the JWS algorithms tokens may be verified with, the ones tollgate's own
//! keys sign with, the syntax of a key id, and the longest token read.

use serde::{Deserialize, Serialize};

/// Longest token accepted anywhere (header values over this are refused before parsing).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The JWS algorithms a token may be verified with (RFC 7518 §3.1, RFC 8037): the
/// asymmetric ones only. HMAC (a shared secret) and `none` are never accepted; which of
/// these a key or an issuer accepts is decided by the key set or the issuer's allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlg {
    ES256,
    ES384,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    EdDSA,
}

impl JwsAlg {
    pub const ALL: [JwsAlg; 9] = [
        JwsAlg::ES256,
        JwsAlg::ES384,
        JwsAlg::RS256,
        JwsAlg::RS384,
        JwsAlg::RS512,
        JwsAlg::PS256,
        JwsAlg::PS384,
        JwsAlg::PS512,
        JwsAlg::EdDSA,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlg::ES256 => "ES256",
            JwsAlg::ES384 => "ES384",
            JwsAlg::RS256 => "RS256",
            JwsAlg::RS384 => "RS384",
            JwsAlg::RS512 => "RS512",
            JwsAlg::PS256 => "PS256",
            JwsAlg::PS384 => "PS384",
            JwsAlg::PS512 => "PS512",
            JwsAlg::EdDSA => "EdDSA",
        }
    }

    /// The algorithm a JWS `alg` header names (case-sensitive, RFC 7515 §4.1.1).
    pub fn from_jws(alg: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == alg)
    }
}

/// JWS algorithms tollgate signs and verifies. HMAC and `none` are deliberately absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Algorithm {
    ES256,
    RS256,
    EdDSA,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::RS256 => "RS256",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm named by a JWS `alg` header, if tollgate supports it.
    pub fn from_jws(alg: &str) -> Option<Self> {
        match alg {
            "ES256" => Some(Algorithm::ES256),
            "RS256" => Some(Algorithm::RS256),
            "EdDSA" => Some(Algorithm::EdDSA),
            _ => None,
        }
    }

    /// The JWS algorithm tokens signed with such a key name.
    pub fn jws(self) -> JwsAlg {
        match self {
            Algorithm::ES256 => JwsAlg::ES256,
            Algorithm::RS256 => JwsAlg::RS256,
            Algorithm::EdDSA => JwsAlg::EdDSA,
        }
    }
}

/// A `kid` is 1-64 characters of `A-Z a-z 0-9 - _ .`: safe in headers, paths and logs.
pub fn is_valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 64
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kids_are_restricted_to_safe_characters() {
        assert!(is_valid_kid("abc-DEF_1.2"));
        assert!(!is_valid_kid("../etc/passwd"));
        assert!(!is_valid_kid("a\"b"));
        assert!(!is_valid_kid(""));
        assert!(!is_valid_kid(&"a".repeat(65)));
    }
}
