//! Client certificates (RFC 8705): what the TLS handshake learned of the certificate a
//! client presented, and how a client registered for `tls_client_auth` (§2.1: a
//! certificate from the configured CA whose subject DN or one SAN is the registered one)
//! or `self_signed_tls_client_auth` (§2.2: one of its pinned certificates) is recognised.
//!
//! Distinguished names are compared in their RFC 4514 string form, parsed: attribute
//! types by their OID (`CN`, `commonName` and `2.5.4.3` are one type), values unescaped
//! and without regard to case or surrounding spaces (the caseIgnoreMatch of the usual DN
//! attributes), RDNs in RFC 4514 order (the most specific first). A multi-valued RDN
//! (`CN=a+UID=b`) counts as its attributes in order.

use std::net::IpAddr;

/// What the gateway knows of the client certificate of a TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// SHA-256 of the leaf certificate's DER (what `cnf["x5t#S256"]` names).
    pub sha256: [u8; 32],
    /// The subject, as (attribute type OID, value) in RFC 4514 order.
    pub subject: DistinguishedName,
    /// subjectAltName entries.
    pub san_dns: Vec<String>,
    pub san_uri: Vec<String>,
    pub san_ip: Vec<IpAddr>,
    pub san_email: Vec<String>,
    /// The chain verified against the listener's `client_ca` (false without one).
    pub chain_verified: bool,
}

/// A distinguished name: its attributes in RFC 4514 order, types as dotted OIDs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DistinguishedName(pub Vec<(String, String)>);

/// The keywords RFC 4514 §3 lists, and a few more that certificates carry.
const KEYWORDS: &[(&str, &str)] = &[
    ("CN", "2.5.4.3"),
    ("COMMONNAME", "2.5.4.3"),
    ("SN", "2.5.4.4"),
    ("SURNAME", "2.5.4.4"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("C", "2.5.4.6"),
    ("COUNTRYNAME", "2.5.4.6"),
    ("L", "2.5.4.7"),
    ("LOCALITYNAME", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("STATEORPROVINCENAME", "2.5.4.8"),
    ("STREET", "2.5.4.9"),
    ("STREETADDRESS", "2.5.4.9"),
    ("O", "2.5.4.10"),
    ("ORGANIZATIONNAME", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("ORGANIZATIONALUNITNAME", "2.5.4.11"),
    ("TITLE", "2.5.4.12"),
    ("GIVENNAME", "2.5.4.42"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("DOMAINCOMPONENT", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
    ("USERID", "0.9.2342.19200300.100.1.1"),
    ("EMAILADDRESS", "1.2.840.113549.1.9.1"),
    ("E", "1.2.840.113549.1.9.1"),
];

/// Why a configured DN cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnError {
    #[error("empty distinguished name")]
    Empty,
    #[error("`{0}` is not type=value")]
    NoEquals(String),
    #[error("unknown attribute type `{0}` (use a keyword such as CN, O, OU, C, or a dotted OID)")]
    UnknownType(String),
    #[error("a bad escape in `{0}` (RFC 4514: \\ then a special character or two hex digits)")]
    Escape(String),
    #[error("hex-encoded values (`#...`) are not supported: write the value as a string")]
    HexValue,
}

fn is_dotted_oid(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()))
}

/// An attribute type's OID: a keyword (any case) or a dotted OID (`oid.` prefix allowed).
fn type_oid(t: &str) -> Option<String> {
    let t = t.trim();
    let bare = t
        .strip_prefix("oid.")
        .or_else(|| t.strip_prefix("OID."))
        .unwrap_or(t);
    if is_dotted_oid(bare) {
        return Some(bare.to_string());
    }
    let upper = t.to_ascii_uppercase();
    KEYWORDS
        .iter()
        .find(|(k, _)| *k == upper)
        .map(|(_, oid)| oid.to_string())
}

/// The keyword RFC 4514 writes for an OID, or the OID itself.
fn keyword(oid: &str) -> &str {
    KEYWORDS
        .iter()
        .find(|(k, o)| *o == oid && k.len() <= 6)
        .map_or(oid, |(k, _)| k)
}

/// Split at unescaped `sep`s.
fn split_unescaped(s: &str, seps: &[char]) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if seps.contains(&c) {
            out.push(String::new());
            continue;
        }
        if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

fn unescape(value: &str) -> Result<String, DnError> {
    let bad = || DnError::Escape(value.to_string());
    let mut bytes = Vec::with_capacity(value.len());
    let raw = value.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            bytes.push(raw[i]);
            i += 1;
            continue;
        }
        let next = *raw.get(i + 1).ok_or_else(bad)?;
        if next.is_ascii_hexdigit() {
            let hex = value.get(i + 1..i + 3).ok_or_else(bad)?;
            bytes.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else if b" \"#+,;<=>\\".contains(&next) {
            bytes.push(next);
            i += 2;
        } else {
            return Err(bad());
        }
    }
    String::from_utf8(bytes).map_err(|_| bad())
}

impl DistinguishedName {
    /// Parse an RFC 4514 string (`CN=client-1,O=Example,C=DE`).
    pub fn parse(text: &str) -> Result<Self, DnError> {
        if text.trim().is_empty() {
            return Err(DnError::Empty);
        }
        let mut out = Vec::new();
        for ava in split_unescaped(text, &[',', ';', '+']) {
            let (t, v) = ava
                .split_once('=')
                .ok_or_else(|| DnError::NoEquals(ava.trim().to_string()))?;
            let oid = type_oid(t).ok_or_else(|| DnError::UnknownType(t.trim().to_string()))?;
            let v = v.trim();
            if v.starts_with('#') {
                return Err(DnError::HexValue);
            }
            out.push((oid, unescape(v)?));
        }
        Ok(Self(out))
    }

    /// Whether two names are the same (types by OID, values ignoring case and spaces
    /// around them).
    pub fn matches(&self, other: &DistinguishedName) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((ta, va), (tb, vb))| ta == tb && fold(va) == fold(vb))
    }
}

fn fold(v: &str) -> String {
    v.trim().to_lowercase()
}

impl std::fmt::Display for DistinguishedName {
    /// The RFC 4514 string.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (oid, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}=", keyword(oid))?;
            let last = value.chars().count().saturating_sub(1);
            for (j, c) in value.chars().enumerate() {
                let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
                    || (j == 0 && matches!(c, ' ' | '#'))
                    || (j == last && c == ' ');
                if special {
                    f.write_str("\\")?;
                }
                if c == '\0' {
                    f.write_str("00")?;
                } else {
                    write!(f, "{c}")?;
                }
            }
        }
        Ok(())
    }
}

/// What a `tls_client_auth` client's certificate must carry: exactly one of these
/// (RFC 8705 §2.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectMatcher {
    SubjectDn(DistinguishedName),
    SanDns(String),
    SanUri(String),
    SanIp(IpAddr),
    SanEmail(String),
}

/// How a client authenticates with its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateAuth {
    /// `tls_client_auth`: a certificate that chains to the listener's `client_ca`, with
    /// the registered subject.
    Pki(SubjectMatcher),
    /// `self_signed_tls_client_auth`: one of these certificates (SHA-256 of the DER).
    SelfSigned(Vec<[u8; 32]>),
}

impl CertificateAuth {
    /// The `token_endpoint_auth_method` it is.
    pub fn method(&self) -> &'static str {
        match self {
            CertificateAuth::Pki(_) => "tls_client_auth",
            CertificateAuth::SelfSigned(_) => "self_signed_tls_client_auth",
        }
    }

    /// Whether `cert` authenticates the client.
    pub fn accepts(&self, cert: &ClientCertificate) -> bool {
        match self {
            CertificateAuth::SelfSigned(pins) => pins.iter().any(|p| p == &cert.sha256),
            CertificateAuth::Pki(m) => {
                cert.chain_verified
                    && match m {
                        SubjectMatcher::SubjectDn(dn) => dn.matches(&cert.subject),
                        SubjectMatcher::SanDns(d) => {
                            cert.san_dns.iter().any(|s| s.eq_ignore_ascii_case(d))
                        }
                        SubjectMatcher::SanUri(u) => cert.san_uri.iter().any(|s| s == u),
                        SubjectMatcher::SanIp(ip) => cert.san_ip.contains(ip),
                        SubjectMatcher::SanEmail(e) => cert.san_email.iter().any(|s| s == e),
                    }
            }
        }
    }
}

/// One DER element: its tag, its content, and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The attribute types of a DER-encoded X.501 Name, in encoding order (its RDNs' SETs
/// flattened), as dotted OIDs.
pub fn name_attribute_oids(der: &[u8]) -> Option<Vec<String>> {
    let (0x30, mut rdns, _) = der_element(der)? else {
        return None;
    };
    let mut out = Vec::new();
    while !rdns.is_empty() {
        let (0x31, mut set, rest) = der_element(rdns)? else {
            return None;
        };
        rdns = rest;
        while !set.is_empty() {
            let (0x30, ava, rest) = der_element(set)? else {
                return None;
            };
            set = rest;
            let (0x06, oid, _) = der_element(ava)? else {
                return None;
            };
            out.push(oid_from_der(oid)?);
        }
    }
    Some(out)
}

/// Dotted-decimal form of a DER-encoded OBJECT IDENTIFIER's content octets.
pub fn oid_from_der(content: &[u8]) -> Option<String> {
    let (first, rest) = content.split_first()?;
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    // The first octet(s) encode the first two arcs: 40 * a + b.
    let mut first_value: Option<u64> = None;
    for &b in std::iter::once(first).chain(rest) {
        acc = acc.checked_mul(128)?.checked_add(u64::from(b & 0x7f))?;
        if b & 0x80 == 0 {
            if first_value.is_none() {
                first_value = Some(acc);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    let v = first_value?;
    let (a, b) = match v {
        0..=39 => (0, v),
        40..=79 => (1, v - 40),
        _ => (2, v - 80),
    };
    let mut s = format!("{a}.{b}");
    for arc in arcs {
        s.push_str(&format!(".{arc}"));
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(subject: &str) -> ClientCertificate {
        ClientCertificate {
            sha256: [1; 32],
            subject: DistinguishedName::parse(subject).unwrap(),
            san_dns: vec!["client.example.com".into()],
            san_uri: vec!["spiffe://example.com/client".into()],
            san_ip: vec!["10.0.0.1".parse().unwrap()],
            san_email: vec!["ops@example.com".into()],
            chain_verified: true,
        }
    }

    #[test]
    fn dns_parse_and_compare_by_oid_ignoring_case() {
        let a = DistinguishedName::parse("CN=Client 1, O=Example\\, Inc.,C=DE").unwrap();
        let b =
            DistinguishedName::parse("commonName=client 1,2.5.4.10=example\\2c inc.,c=de").unwrap();
        assert!(a.matches(&b));
        assert_eq!(a.to_string(), "CN=Client 1,O=Example\\, Inc.,C=DE");
        let c = DistinguishedName::parse("CN=Client 1,O=Example\\, Inc.").unwrap();
        assert!(!a.matches(&c));
        assert!(DistinguishedName::parse("").is_err());
        assert!(DistinguishedName::parse("CN").is_err());
        assert!(DistinguishedName::parse("XX=1").is_err());
        assert!(DistinguishedName::parse("CN=#0403").is_err());
        assert!(DistinguishedName::parse("CN=a\\q").is_err());
    }

    #[test]
    fn pki_needs_a_verified_chain_and_the_subject() {
        let c = cert("CN=client-1,O=Example");
        let dn = DistinguishedName::parse("CN=client-1,O=Example").unwrap();
        for m in [
            SubjectMatcher::SubjectDn(dn.clone()),
            SubjectMatcher::SanDns("CLIENT.example.com".into()),
            SubjectMatcher::SanUri("spiffe://example.com/client".into()),
            SubjectMatcher::SanIp("10.0.0.1".parse().unwrap()),
            SubjectMatcher::SanEmail("ops@example.com".into()),
        ] {
            let auth = CertificateAuth::Pki(m);
            assert!(auth.accepts(&c), "{auth:?}");
            let mut unverified = c.clone();
            unverified.chain_verified = false;
            assert!(!auth.accepts(&unverified));
        }
        let other = CertificateAuth::Pki(SubjectMatcher::SanDns("other.example.com".into()));
        assert!(!other.accepts(&c));
        let pinned = CertificateAuth::SelfSigned(vec![[1; 32]]);
        let mut unverified = c.clone();
        unverified.chain_verified = false;
        assert!(pinned.accepts(&unverified));
        assert!(!CertificateAuth::SelfSigned(vec![[2; 32]]).accepts(&c));
    }

    #[test]
    fn oids_decode() {
        assert_eq!(
            oid_from_der(&[0x55, 0x04, 0x03]).as_deref(),
            Some("2.5.4.3")
        );
        assert_eq!(
            oid_from_der(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]).as_deref(),
            Some("1.2.840.113549.1.9.1")
        );
        assert_eq!(oid_from_der(&[]), None);
        // SEQUENCE { SET { SEQUENCE { 2.5.4.3, UTF8String "a" } } }
        let name = [
            0x30, 0x0c, 0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x01, b'a',
        ];
        assert_eq!(
            name_attribute_oids(&name),
            Some(vec!["2.5.4.3".to_string()])
        );
        assert_eq!(name_attribute_oids(&name[..5]), None);
    }
}
