//! Compact JWS JWTs: strict parsing of what clients present (exactly three base64url parts,
//! one JSON object each, no duplicate keys, no `crit`, a safe `kid`) and the claims
//! tollgate writes when it issues a token.

use crate::domain::cnf::Confirmation;
use crate::domain::jose::is_valid_kid;
mod issued;
mod strict;

pub use issued::{AudienceOut, CnfOut, IssuedClaims, TenantClaims};

use crate::domain::jose::{JwsAlg, MAX_TOKEN_LEN};
use crate::domain::scope::Scopes;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use strict::{Key, SeenKeys, Unread, from_json};

/// Why a token could not be read. Every variant means "malformed" to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Not three non-empty base64url parts.
    Structure,
    /// Header or claims are not a JSON object of the expected shape.
    Json,
    /// A key appears twice in the header or the claims.
    DuplicateKey,
    /// `alg` is missing, `none`, or one tollgate does not accept.
    Algorithm,
    /// The header has `crit`: extensions tollgate does not implement (RFC 7515 §4.1.11).
    Critical,
    /// `kid` has characters outside `A-Z a-z 0-9 - _ .` or is too long.
    KeyId,
}

/// A token split and its header read, signature not yet checked.
pub struct Unverified<'a> {
    pub alg: JwsAlg,
    pub kid: Option<String>,
    /// The `typ` header, as written (RFC 7515 §4.1.9; `at+jwt` for RFC 9068 access tokens).
    pub typ: Option<String>,
    /// `header.claims`, the bytes the signature covers.
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
    claims_b64: &'a str,
}

/// Split a compact JWS and read its header.
pub fn parse(token: &str) -> Result<Unverified<'_>, Malformed> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Malformed::Structure);
    }
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed::Structure);
    };
    if h.is_empty() || c.is_empty() || s.is_empty() {
        return Err(Malformed::Structure);
    }
    let header_json = B64.decode(h).map_err(|_| Malformed::Structure)?;
    let signature = B64.decode(s).map_err(|_| Malformed::Structure)?;
    let header: Header = from_json(&header_json)?;
    if header.crit {
        return Err(Malformed::Critical);
    }
    let alg = header
        .alg
        .as_deref()
        .and_then(JwsAlg::from_jws)
        .ok_or(Malformed::Algorithm)?;
    if let Some(kid) = &header.kid
        && !is_valid_kid(kid)
    {
        return Err(Malformed::KeyId);
    }
    Ok(Unverified {
        alg,
        kid: header.kid,
        typ: header.typ,
        signing_input: &token.as_bytes()[..h.len() + 1 + c.len()],
        signature,
        claims_b64: c,
    })
}

impl Unverified<'_> {
    /// Decode the claims. Call only after the signature has been verified.
    pub fn claims(&self) -> Result<Claims, Malformed> {
        let json = B64
            .decode(self.claims_b64)
            .map_err(|_| Malformed::Structure)?;
        from_json(&json)
    }

    /// The claims both as [`Claims`] and as a JSON value, for claims looked up by a
    /// configured path (an external issuer's `roles`, `realm_access.roles`). The strict
    /// parse runs first, so a document with repeated names is refused before the lenient
    /// one could pick either value. Call only after the signature has been verified.
    pub fn claims_and_value(&self) -> Result<(Claims, serde_json::Value), Malformed> {
        let json = B64
            .decode(self.claims_b64)
            .map_err(|_| Malformed::Structure)?;
        let claims = from_json(&json)?;
        let value = serde_json::from_slice(&json).map_err(|_| Malformed::Json)?;
        Ok((claims, value))
    }
}

/// Whether a `typ` header value names `expected` (RFC 7515 §4.1.9: compared without
/// case, and `application/` may be left out).
pub fn typ_is(typ: &str, expected: &str) -> bool {
    let bare = match typ.get(..12) {
        Some(p) if p.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    bare.eq_ignore_ascii_case(expected)
}

struct Header {
    alg: Option<String>,
    kid: Option<String>,
    typ: Option<String>,
    crit: bool,
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Header;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JOSE header object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
                let mut seen = SeenKeys::default();
                let mut h = Header {
                    alg: None,
                    kid: None,
                    typ: None,
                    crit: false,
                };
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    seen.check(key.clone())?;
                    match &*key {
                        "alg" => h.alg = Some(map.next_value()?),
                        "kid" => h.kid = Some(map.next_value()?),
                        "typ" => h.typ = Some(map.next_value()?),
                        "crit" => {
                            map.next_value::<Unread>()?;
                            h.crit = true;
                        }
                        // jku, x5u, jwk, x5c and the rest are ignored: keys come only
                        // from the gateway's own key set, never from the token.
                        _ => {
                            map.next_value::<Unread>()?;
                        }
                    }
                }
                Ok(h)
            }
        }
        d.deserialize_map(V)
    }
}

/// The registered and tollgate claims of a presented token.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Claims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub aud: Vec<String>,
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    pub jti: Option<String>,
    pub client_id: Option<String>,
    /// From `scope` (string or array), else `scp` (string or array).
    pub scopes: Scopes,
    /// Set on tokens issued for a user (password grant).
    pub username: Option<String>,
    /// The grant the token belongs to (revoking it revokes the token).
    pub gid: Option<String>,
    /// What a sender-constrained token is bound to (`cnf.jkt` or `cnf["x5t#S256"]`).
    pub cnf: Option<Confirmation>,
}

/// `cnf` as read: the members tollgate enforces (RFC 9449 §6.1, RFC 8705 §3.1).
#[derive(Deserialize)]
struct CnfIn {
    jkt: Option<String>,
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

impl CnfIn {
    /// A `cnf` that names neither, or one not a SHA-256, binds to nothing tollgate can
    /// check: such a token is refused as malformed rather than passed as a bearer token.
    fn confirmation(self) -> Option<Option<Confirmation>> {
        match (self.jkt, self.x5t_s256) {
            (Some(j), None) => Confirmation::from_member("jkt", &j).map(Some),
            (None, Some(x)) => Confirmation::from_member("x5t#S256", &x).map(Some),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

/// RFC 7519 NumericDate: seconds, integer or not; fractions are dropped.
struct NumericDate(i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        if let Some(i) = n.as_i64() {
            return Ok(NumericDate(i));
        }
        match n.as_f64() {
            Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(NumericDate(f.floor() as i64)),
            _ => Err(de::Error::custom("NumericDate out of range")),
        }
    }
}

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Claims;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JWT claims object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
                let mut seen = SeenKeys::default();
                let mut c = Claims::default();
                let mut scope = None;
                let mut scp = None;
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    seen.check(key.clone())?;
                    match &*key {
                        "iss" => c.iss = Some(map.next_value()?),
                        "sub" => c.sub = Some(map.next_value()?),
                        "aud" => c.aud = map.next_value::<StringOrList>()?.into_vec(),
                        "exp" => c.exp = Some(map.next_value::<NumericDate>()?.0),
                        "nbf" => c.nbf = Some(map.next_value::<NumericDate>()?.0),
                        "iat" => c.iat = Some(map.next_value::<NumericDate>()?.0),
                        "jti" => c.jti = Some(map.next_value()?),
                        "client_id" => c.client_id = Some(map.next_value()?),
                        "username" => c.username = Some(map.next_value()?),
                        "gid" => c.gid = Some(map.next_value()?),
                        "cnf" => {
                            c.cnf = map
                                .next_value::<CnfIn>()?
                                .confirmation()
                                .ok_or_else(|| de::Error::custom("unusable cnf"))?;
                        }
                        "scope" => scope = Some(map.next_value::<StringOrList>()?.into_vec()),
                        "scp" => scp = Some(map.next_value::<StringOrList>()?.into_vec()),
                        _ => {
                            map.next_value::<Unread>()?;
                        }
                    }
                }
                if let Some(list) = scope.or(scp) {
                    c.scopes = Scopes::from_list(list);
                }
                Ok(c)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        B64.encode(s)
    }

    fn token(header: &str, claims: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(claims), b64("sig"))
    }

    #[test]
    fn reads_header_and_claims() {
        let t = token(
            r#"{"alg":"ES256","typ":"JWT","kid":"k1"}"#,
            r#"{"iss":"i","sub":"s","aud":["a","b"],"exp":10,"nbf":1.9,"iat":1,"jti":"j","client_id":"c","scope":"x y","custom":{"deep":[1,2]}}"#,
        );
        let u = parse(&t).unwrap();
        assert_eq!(u.alg, JwsAlg::ES256);
        assert_eq!(u.kid.as_deref(), Some("k1"));
        assert_eq!(u.typ.as_deref(), Some("JWT"));
        assert_eq!(u.signature, b"sig");
        assert!(t.starts_with(std::str::from_utf8(u.signing_input).unwrap()));
        let c = u.claims().unwrap();
        assert_eq!(c.aud, ["a", "b"]);
        assert_eq!((c.exp, c.nbf, c.iat), (Some(10), Some(1), Some(1)));
        assert_eq!(c.scopes.to_space_separated(), "x y");
        assert_eq!(c.client_id.as_deref(), Some("c"));
    }

    #[test]
    fn scope_may_be_an_array_or_scp() {
        let c = |claims: &str| {
            parse(&token(r#"{"alg":"EdDSA"}"#, claims))
                .unwrap()
                .claims()
                .unwrap()
        };
        assert_eq!(
            c(r#"{"scope":["a","b c"]}"#).scopes.to_space_separated(),
            "a b c"
        );
        assert_eq!(c(r#"{"scp":"p q"}"#).scopes.to_space_separated(), "p q");
        assert_eq!(c(r#"{"scp":["p"]}"#).scopes.to_space_separated(), "p");
        assert_eq!(
            c(r#"{"scope":"s","scp":"p"}"#).scopes.to_space_separated(),
            "s"
        );
        assert_eq!(c(r#"{"aud":"one"}"#).aud, ["one"]);
    }

    #[test]
    fn rejects_structural_problems() {
        assert_eq!(parse("a.b").err(), Some(Malformed::Structure));
        assert_eq!(parse("a.b.c.d").err(), Some(Malformed::Structure));
        assert_eq!(parse("..").err(), Some(Malformed::Structure));
        assert_eq!(parse("!!!.abc.abc").err(), Some(Malformed::Structure));
        let padded = format!("{}=.{}.{}", b64(r#"{"alg":"ES256"}"#), b64("{}"), b64("s"));
        assert_eq!(parse(&padded).err(), Some(Malformed::Structure));
        assert_eq!(
            parse(&"a".repeat(MAX_TOKEN_LEN + 1)).err(),
            Some(Malformed::Structure)
        );
        assert_eq!(parse(&token("[1]", "{}")).err(), Some(Malformed::Json));
        assert_eq!(parse(&token("not json", "{}")).err(), Some(Malformed::Json));
        let t = token(r#"{"alg":"ES256"}"#, r#"{"exp":"soon"}"#);
        let bad_claims = parse(&t).unwrap();
        assert_eq!(bad_claims.claims().err(), Some(Malformed::Json));
    }

    #[test]
    fn rejects_unsafe_algorithms() {
        for alg in [
            r#"{"alg":"none"}"#,
            r#"{"alg":"HS256"}"#,
            r#"{"typ":"JWT"}"#,
            r#"{"alg":"es256"}"#,
        ] {
            assert_eq!(
                parse(&token(alg, "{}")).err(),
                Some(Malformed::Algorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn every_asymmetric_algorithm_is_read_and_typ_compares_loosely() {
        for alg in JwsAlg::ALL {
            let h = serde_json::json!({"alg": alg.as_str(), "typ": "at+jwt"}).to_string();
            let t = token(&h, "{}");
            let u = parse(&t).unwrap();
            assert_eq!(u.alg, alg);
            assert!(typ_is(u.typ.as_deref().unwrap(), "at+jwt"));
        }
        assert!(typ_is("application/AT+JWT", "at+jwt"));
        assert!(typ_is("JWT", "jwt"));
        assert!(!typ_is("JWT", "at+jwt"));
        assert!(!typ_is("application/", "at+jwt"));
        assert!(!typ_is("x", "at+jwt"));
    }

    #[test]
    fn claims_and_value_agree_and_refuse_repeats() {
        let t = token(
            r#"{"alg":"ES256"}"#,
            r#"{"sub":"s","realm_access":{"roles":["a"]}}"#,
        );
        let (c, v) = parse(&t).unwrap().claims_and_value().unwrap();
        assert_eq!(c.sub.as_deref(), Some("s"));
        assert_eq!(v["realm_access"]["roles"][0], "a");
        let t = token(r#"{"alg":"ES256"}"#, r#"{"roles":["a"],"roles":["admin"]}"#);
        assert_eq!(
            parse(&t).unwrap().claims_and_value().err(),
            Some(Malformed::DuplicateKey)
        );
    }

    #[test]
    fn rejects_crit_and_unsafe_kids() {
        assert_eq!(
            parse(&token(r#"{"alg":"ES256","crit":["exp"],"exp":1}"#, "{}")).err(),
            Some(Malformed::Critical)
        );
        for kid in ["../../etc/passwd", "a\"b", "a b", "x'; DROP", ""] {
            let h = serde_json::json!({"alg": "ES256", "kid": kid}).to_string();
            assert_eq!(
                parse(&token(&h, "{}")).err(),
                Some(Malformed::KeyId),
                "{kid}"
            );
        }
    }

    #[test]
    fn ignores_key_url_headers() {
        let h =
            r#"{"alg":"ES256","jku":"http://evil/jwks","x5u":"http://evil/x5","jwk":{"kty":"EC"}}"#;
        let t = token(h, "{}");
        let u = parse(&t).unwrap();
        assert_eq!(u.kid, None);
    }

    #[test]
    fn rejects_json_that_is_not_utf8() {
        let bad = |json: &[u8]| format!("{}.{}.{}", B64.encode(json), b64("{}"), b64("sig"));
        assert_eq!(
            parse(&bad(b"{\"alg\":\"ES256\",\"x\":\"\xff\"}")).err(),
            Some(Malformed::Json)
        );
        // Found by the jwt_claims fuzz target: invalid UTF-8 in the value of a claim we do
        // not read was accepted.
        let claims = include_bytes!("../fuzz/regressions/jwt_claims/non-utf8-in-unread-claim");
        let t = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"ES256"}"#),
            B64.encode(claims),
            b64("sig")
        );
        assert_eq!(parse(&t).unwrap().claims().err(), Some(Malformed::Json));
    }

    #[test]
    fn members_we_do_not_read_must_still_be_sound_json() {
        let claims = |c: &str| parse(&token(r#"{"alg":"ES256"}"#, c)).unwrap().claims();
        // Found by the jwt_claims fuzz target: a lone surrogate escape in an unread claim.
        let found = include_bytes!("../fuzz/regressions/jwt_claims/lone-surrogate-in-unread-claim");
        let t = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"ES256"}"#),
            B64.encode(found),
            b64("sig")
        );
        assert_eq!(parse(&t).unwrap().claims().err(), Some(Malformed::Json));
        assert_eq!(claims(r#"{"x":"\ud800"}"#).err(), Some(Malformed::Json));
        assert_eq!(
            claims(r#"{"x":{"y":1,"y":2}}"#).err(),
            Some(Malformed::DuplicateKey)
        );
        assert_eq!(
            claims(r#"{"x":[{"y":1,"\u0079":2}]}"#).err(),
            Some(Malformed::DuplicateKey)
        );
        let header = |h: &str| parse(&token(h, "{}")).err();
        assert_eq!(
            header(r#"{"alg":"ES256","x":"\udc00"}"#),
            Some(Malformed::Json)
        );
        assert_eq!(
            header(r#"{"alg":"ES256","jwk":{"kty":"EC","kty":"RSA"}}"#),
            Some(Malformed::DuplicateKey)
        );
        // Sound unread members of every kind are accepted.
        let ok =
            claims(r#"{"sub":"s","x":{"a":[1,-2,3.5,true,false,null,"\ud83d\ude00",{}]},"y":[]}"#);
        assert_eq!(ok.unwrap().sub.as_deref(), Some("s"));
    }

    #[test]
    fn rejects_duplicate_keys() {
        assert_eq!(
            parse(&token(r#"{"alg":"ES256","alg":"none"}"#, "{}")).err(),
            Some(Malformed::DuplicateKey)
        );
        assert_eq!(
            parse(&token(r#"{"alg":"ES256","x":1,"x":2}"#, "{}")).err(),
            Some(Malformed::DuplicateKey)
        );
        let t = token(r#"{"alg":"ES256"}"#, r#"{"sub":"a","sub":"b"}"#);
        let u = parse(&t).unwrap();
        assert_eq!(u.claims().err(), Some(Malformed::DuplicateKey));
        // An escaped spelling of the same key is the same key.
        let t = token(r#"{"alg":"ES256"}"#, r#"{"exp":1,"\u0065xp":2}"#);
        let u = parse(&t).unwrap();
        assert_eq!(u.claims().err(), Some(Malformed::DuplicateKey));
    }

    #[test]
    fn issued_audience_is_a_string_or_an_array() {
        let one = vec!["a".to_string()];
        let two = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            serde_json::to_string(&AudienceOut::from_list(&one)).unwrap(),
            r#""a""#
        );
        assert_eq!(
            serde_json::to_string(&AudienceOut::from_list(&two)).unwrap(),
            r#"["a","b"]"#
        );
    }
}
