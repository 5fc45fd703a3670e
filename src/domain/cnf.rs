//! Sender constraints: the `cnf` (confirmation, RFC 7800) of a bound access token. A
//! DPoP-bound token names the SHA-256 thumbprint of the client's proof key (RFC 9449 §6,
//! RFC 7638); a certificate-bound one the SHA-256 of the client certificate (RFC 8705
//! §3.1). Either is 32 bytes, so a principal carries it inline.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// `ath` (RFC 9449 §4.2): the base64url SHA-256 of an access token, which a proof sent
/// with the token must carry.
pub fn token_hash(token: &str) -> String {
    B64.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))
}

/// What a bound token is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Confirmation {
    /// `cnf.jkt`: the RFC 7638 SHA-256 thumbprint of the DPoP public key.
    Jkt([u8; 32]),
    /// `cnf["x5t#S256"]`: the SHA-256 of the client certificate's DER.
    X5tS256([u8; 32]),
}

impl Confirmation {
    /// The member of `cnf` that carries it.
    pub fn member(self) -> &'static str {
        match self {
            Confirmation::Jkt(_) => "jkt",
            Confirmation::X5tS256(_) => "x5t#S256",
        }
    }

    fn bytes(&self) -> &[u8; 32] {
        match self {
            Confirmation::Jkt(b) | Confirmation::X5tS256(b) => b,
        }
    }

    /// The member's value: base64url, no padding.
    pub fn value(self) -> String {
        B64.encode(self.bytes())
    }

    /// `{"jkt": "..."}` or `{"x5t#S256": "..."}`.
    pub fn to_json(self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert(self.member().to_string(), self.value().into());
        serde_json::Value::Object(m)
    }

    /// The confirmation a `cnf` member names, if it is one tollgate binds to and its value
    /// is a base64url SHA-256.
    pub fn from_member(member: &str, value: &str) -> Option<Self> {
        let bytes: [u8; 32] = B64.decode(value).ok()?.try_into().ok()?;
        match member {
            "jkt" => Some(Confirmation::Jkt(bytes)),
            "x5t#S256" => Some(Confirmation::X5tS256(bytes)),
            _ => None,
        }
    }

    /// How the store keeps it: `<member>:<value>`.
    pub fn to_stored(self) -> String {
        format!("{}:{}", self.member(), self.value())
    }

    pub fn from_stored(s: &str) -> Option<Self> {
        let (member, value) = s.split_once(':')?;
        Self::from_member(member, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_and_the_store() {
        for c in [Confirmation::Jkt([7; 32]), Confirmation::X5tS256([9; 32])] {
            assert_eq!(Confirmation::from_stored(&c.to_stored()), Some(c));
            let json = c.to_json();
            let (member, value) = json.as_object().unwrap().iter().next().unwrap();
            assert_eq!(
                Confirmation::from_member(member, value.as_str().unwrap()),
                Some(c)
            );
        }
        assert_eq!(Confirmation::from_member("jkt", "short"), None);
        assert_eq!(Confirmation::from_member("x5t", &B64.encode([0; 32])), None);
        assert_eq!(Confirmation::from_stored("jkt"), None);
    }
}
