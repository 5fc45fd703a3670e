//! Reading a DPoP proof (RFC 9449 §4.2): a compact JWS whose header carries the public key
//! that signs it. The header is parsed once per distinct header (a client sends the same
//! one with every proof) and kept with its verifying key and thumbprint; the claims are
//! read from every proof.

use crate::domain::jose::JwsAlg;
use crate::domain::jwk::PublicMembers;
use crate::jwt::typ_is;
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::ParsedPublicKey;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::Deserialize;
use serde::de::IgnoredAny;
use std::borrow::Cow;

/// Longest proof read: a proof with an RSA-4096 key is about 1.5 KiB.
pub const MAX_PROOF_LEN: usize = 4096;

/// Longest `jti` accepted (RFC 9449 asks for at least 96 random bits; 64 bytes is ample).
const MAX_JTI_LEN: usize = 256;

/// Why a proof is refused. The text is the `error_description` the client gets: it says
/// which check failed, never echoing what the proof contains.
pub type Invalid = &'static str;

/// A proof's header, parsed: its key, ready to verify, and the key's thumbprint.
pub struct ProofKey {
    /// The base64url header it was parsed from (a cache hit is checked against it).
    pub header: Box<str>,
    pub alg: JwsAlg,
    /// RFC 7638 SHA-256 thumbprint of the key: what `cnf.jkt` names.
    pub jkt: [u8; 32],
    key: ParsedPublicKey,
}

impl ProofKey {
    pub fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(input, signature).is_ok()
    }
}

/// A compact proof split into its parts.
pub struct Parts<'a> {
    pub header: &'a str,
    pub claims: &'a str,
    /// `header.claims`, the bytes the signature covers.
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
}

pub fn split(proof: &str) -> Result<Parts<'_>, Invalid> {
    if proof.len() > MAX_PROOF_LEN {
        return Err("the DPoP proof is too large");
    }
    let mut it = proof.splitn(4, '.');
    let (Some(h), Some(c), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err("the DPoP proof is not a compact JWS");
    };
    if h.is_empty() || c.is_empty() || s.is_empty() {
        return Err("the DPoP proof is not a compact JWS");
    }
    let signature = B64
        .decode(s)
        .map_err(|_| "the DPoP proof is not a compact JWS")?;
    Ok(Parts {
        header: h,
        claims: c,
        signing_input: &proof.as_bytes()[..h.len() + 1 + c.len()],
        signature,
    })
}

#[derive(Deserialize)]
struct Header {
    typ: Option<String>,
    alg: Option<String>,
    jwk: Option<Jwk>,
    crit: Option<IgnoredAny>,
}

/// The members of the header's `jwk`; any private member refuses the proof.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    d: Option<IgnoredAny>,
    p: Option<IgnoredAny>,
    q: Option<IgnoredAny>,
    dp: Option<IgnoredAny>,
    dq: Option<IgnoredAny>,
    qi: Option<IgnoredAny>,
    oth: Option<IgnoredAny>,
    k: Option<IgnoredAny>,
}

impl Jwk {
    fn has_private_member(&self) -> bool {
        self.d.is_some()
            || self.p.is_some()
            || self.q.is_some()
            || self.dp.is_some()
            || self.dq.is_some()
            || self.qi.is_some()
            || self.oth.is_some()
            || self.k.is_some()
    }
}

fn is_b64url(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parse a proof header (RFC 9449 §4.3 checks 4-7): `typ` is `dpop+jwt`, `alg` is one of
/// `allowed` (asymmetric only), `jwk` is a public key of that algorithm, no `crit`.
pub fn parse_header(header_b64: &str, allowed: &[JwsAlg]) -> Result<ProofKey, Invalid> {
    let json = B64
        .decode(header_b64)
        .map_err(|_| "the DPoP proof header is not base64url")?;
    let h: Header =
        serde_json::from_slice(&json).map_err(|_| "the DPoP proof header is not a JSON object")?;
    if !h.typ.as_deref().is_some_and(|t| typ_is(t, "dpop+jwt")) {
        return Err("the DPoP proof's typ is not dpop+jwt");
    }
    if h.crit.is_some() {
        return Err("the DPoP proof has crit extensions");
    }
    let alg = h
        .alg
        .as_deref()
        .and_then(JwsAlg::from_jws)
        .filter(|a| allowed.contains(a))
        .ok_or("the DPoP proof's alg is not one this server accepts")?;
    let jwk = h.jwk.ok_or("the DPoP proof has no jwk")?;
    if jwk.has_private_member() {
        return Err("the DPoP proof's jwk holds a private key");
    }
    let members = PublicMembers {
        kty: &jwk.kty,
        crv: jwk.crv.as_deref(),
        n: jwk.n.as_deref(),
        e: jwk.e.as_deref(),
        x: jwk.x.as_deref(),
        y: jwk.y.as_deref(),
    };
    // The thumbprint is over the members as written: they must be canonical (unpadded
    // base64url), or two spellings of one key would have two thumbprints.
    let canonical = [members.n, members.e, members.x, members.y]
        .into_iter()
        .flatten()
        .all(is_b64url);
    if !canonical {
        return Err("the DPoP proof's jwk is not unpadded base64url");
    }
    let (algs, material) = members
        .material()
        .map_err(|_| "the DPoP proof's jwk is not a usable public key")?;
    let verification = algs
        .iter()
        .find(|(a, _)| *a == alg)
        .map(|(_, v)| *v)
        .ok_or("the DPoP proof's jwk does not fit its alg")?;
    let key = ParsedPublicKey::new(verification, &material)
        .map_err(|_| "the DPoP proof's jwk is not a usable public key")?;
    let input = members
        .thumbprint_input()
        .ok_or("the DPoP proof's jwk is not a usable public key")?;
    let mut jkt = [0u8; 32];
    jkt.copy_from_slice(digest(&SHA256, input.as_bytes()).as_ref());
    Ok(ProofKey {
        header: header_b64.into(),
        alg,
        jkt,
        key,
    })
}

/// The claims of a proof (RFC 9449 §4.2), borrowed from the decoded JSON where it has no
/// escapes. Repeated members are refused by the parser.
#[derive(Debug, Deserialize)]
pub struct Claims<'a> {
    #[serde(borrow)]
    pub jti: Cow<'a, str>,
    #[serde(borrow)]
    pub htm: Cow<'a, str>,
    #[serde(borrow)]
    pub htu: Cow<'a, str>,
    pub iat: serde_json::Number,
    #[serde(borrow, default)]
    pub ath: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub nonce: Option<Cow<'a, str>>,
}

/// The claims' JSON.
pub fn decode_claims(claims_b64: &str) -> Result<Vec<u8>, Invalid> {
    B64.decode(claims_b64)
        .map_err(|_| "the DPoP proof claims are not base64url")
}

pub fn parse_claims(json: &[u8]) -> Result<Claims<'_>, Invalid> {
    let c: Claims = serde_json::from_slice(json)
        .map_err(|_| "the DPoP proof must carry jti, htm, htu and iat, once each")?;
    if c.jti.is_empty() || c.jti.len() > MAX_JTI_LEN {
        return Err("the DPoP proof's jti is empty or too long");
    }
    Ok(c)
}

pub use crate::domain::cnf::token_hash;

/// An origin as written, compared without case and without the scheme's default port
/// (RFC 3986 §6.2.2-6.2.3), with no copy made.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    scheme: &'a str,
    /// `host[:port]`, the default port left out.
    authority: &'a str,
}

impl<'a> Origin<'a> {
    pub fn new(scheme: &'a str, authority: &'a str) -> Self {
        let authority = match authority.rsplit_once(':') {
            Some((host, "80")) if scheme.eq_ignore_ascii_case("http") => host,
            Some((host, "443")) if scheme.eq_ignore_ascii_case("https") => host,
            _ => authority,
        };
        Self { scheme, authority }
    }

    pub fn same(&self, other: &Origin<'_>) -> bool {
        self.scheme.eq_ignore_ascii_case(other.scheme)
            && self.authority.eq_ignore_ascii_case(other.authority)
    }

    pub fn scheme(&self) -> &'a str {
        self.scheme
    }

    pub fn authority(&self) -> &'a str {
        self.authority
    }
}

/// The parts of an `htu` that are compared (RFC 9449 §4.3 check 9: without query and
/// fragment): its origin, and its path (`/` when empty).
pub fn split_htu(htu: &str) -> Option<(Origin<'_>, &str)> {
    // Byte scans: `:`, `/`, `?` and `#` are ASCII, so every index is a char boundary.
    let colon = htu.bytes().position(|b| b == b':')?;
    let (scheme, rest) = (&htu[..colon], htu[colon..].strip_prefix("://")?);
    let end = rest
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(rest.len());
    let rest = &rest[..end];
    let (authority, path) = match rest.bytes().position(|b| b == b'/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if scheme.is_empty() || authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some((Origin::new(scheme, authority), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_is_compared_by_origin_without_case_or_default_port_and_by_path() {
        let (o, path) = split_htu("HTTPS://Api.Example:443/orders/1?x=1#top").unwrap();
        assert_eq!(path, "/orders/1");
        assert!(o.same(&Origin::new("https", "api.example")));
        assert!(!o.same(&Origin::new("http", "api.example")));
        assert!(!o.same(&Origin::new("https", "api.example:8443")));
        let (o, path) = split_htu("http://127.0.0.1:80").unwrap();
        assert_eq!(path, "/");
        assert!(o.same(&Origin::new("http", "127.0.0.1")));
        assert!(Origin::new("http", "[::1]:80").same(&Origin::new("HTTP", "[::1]")));
        for bad in [
            "no-scheme/x",
            "://host/x",
            "http:///x",
            "http://user@host/x",
        ] {
            assert!(split_htu(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn headers_without_a_usable_public_key_are_refused() {
        let h = |v: serde_json::Value| B64.encode(v.to_string());
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256",
            "x": B64.encode([1u8; 32]), "y": B64.encode([2u8; 32])});
        let es = [JwsAlg::ES256];
        for (header, why) in [
            (
                serde_json::json!({"typ": "dpop+jwt", "alg": "ES256"}),
                "no jwk",
            ),
            (
                serde_json::json!({"typ": "JWT", "alg": "ES256", "jwk": jwk}),
                "typ",
            ),
            (
                serde_json::json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk}),
                "HMAC",
            ),
            (
                serde_json::json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk}),
                "not allowed",
            ),
            (
                serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk, "crit": ["x"]}),
                "crit",
            ),
        ] {
            assert!(parse_header(&h(header), &es).is_err(), "{why}");
        }
        // Not a point on the curve.
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        assert!(parse_header(&h(header), &es).is_err());
        assert!(parse_header("!!", &es).is_err());
    }
}
