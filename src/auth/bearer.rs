//! Reading the access token from `Authorization`: `Bearer <t>` (RFC 6750 §2.1) or, as
//! seed 001's clients send it, the bare token.

use crate::domain::jose::MAX_TOKEN_LEN;
use http::HeaderMap;
use http::header::AUTHORIZATION;

/// What the request presented.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    /// No `Authorization` header.
    Missing,
    /// A syntactically acceptable token.
    Token(&'a str),
    /// A token under the `DPoP` scheme (RFC 9449 §7.1): it must come with its proof.
    Dpop(&'a str),
    /// Several headers, another scheme, or characters no token can contain.
    Malformed,
}

/// Find the access token in the request headers.
pub fn extract(headers: &HeaderMap) -> Presented<'_> {
    match extract_unchecked(headers) {
        Presented::Token(t) | Presented::Dpop(t) if !is_b64token(t) => Presented::Malformed,
        presented => presented,
    }
}

/// As [`extract`], but a `Token` is not yet checked to be a `b64token`: the caller runs
/// [`is_b64token`] before it relies on it. The proxy checks it on a validation-cache miss
/// only: a cached token passed the check when it was verified, and a scan of every byte
/// of a token on every request is the largest part of reading it.
pub fn extract_unchecked(headers: &HeaderMap) -> Presented<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Presented::Missing;
    };
    if values.next().is_some() {
        return Presented::Malformed;
    }
    // `from_utf8`, not `HeaderValue::to_str`: the latter tests every byte of the token in
    // a scalar loop, on every request; `parse` accepts only ASCII token bytes anyway, so a
    // value `to_str` refuses is refused there too (Malformed).
    let Ok(text) = std::str::from_utf8(value.as_bytes()) else {
        return Presented::Malformed;
    };
    parse_scheme(text)
}

/// Parse one `Authorization` value.
pub fn parse(text: &str) -> Presented<'_> {
    match parse_scheme(text) {
        Presented::Token(t) | Presented::Dpop(t) if !is_b64token(t) => Presented::Malformed,
        presented => presented,
    }
}

/// The token of one `Authorization` value, its characters not checked.
fn parse_scheme(text: &str) -> Presented<'_> {
    let text = text.trim_matches([' ', '\t']);
    // A byte scan that stops at the scheme's end (a `str` split by a set of chars decodes
    // every char of the token; this runs on every request).
    let token = match text.bytes().position(|b| b == b' ' || b == b'\t') {
        Some(i) if text[..i].eq_ignore_ascii_case("bearer") => {
            text[i..].trim_start_matches([' ', '\t'])
        }
        Some(i) if text[..i].eq_ignore_ascii_case("dpop") => {
            return Presented::Dpop(text[i..].trim_start_matches([' ', '\t']));
        }
        Some(_) => return Presented::Malformed,
        None if text.is_empty() => return Presented::Missing,
        None if text.eq_ignore_ascii_case("bearer") || text.eq_ignore_ascii_case("dpop") => {
            return Presented::Malformed;
        }
        None => text,
    };
    Presented::Token(token)
}

/// Whether `b` may appear in an RFC 6750 `b64token` body. Comparisons only, no table and
/// no early exit, so that the loop over a token compiles to vector code (this runs over
/// every byte of every token presented).
fn b64token_byte(b: u8) -> bool {
    let folded = b | 0x20; // ASCII letters to lower case; nothing else lands in a..z
    (folded.wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

/// RFC 6750 §2.1 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn is_b64token(t: &str) -> bool {
    if t.is_empty() || t.len() > MAX_TOKEN_LEN {
        return false;
    }
    let body = t.trim_end_matches('=');
    !body.is_empty() && body.bytes().fold(true, |ok, b| ok & b64token_byte(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn b64token_bytes_are_exactly_rfc6750s() {
        for b in 0..=255u8 {
            let spec = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(b64token_byte(b), spec, "byte {b:#04x}");
        }
    }

    #[test]
    fn bearer_and_bare_tokens() {
        assert_eq!(parse("Bearer abc.def.ghi"), Presented::Token("abc.def.ghi"));
        assert_eq!(parse("bearer   abc"), Presented::Token("abc"));
        assert_eq!(parse("BEARER abc=="), Presented::Token("abc=="));
        assert_eq!(parse("abc.def.ghi"), Presented::Token("abc.def.ghi"));
        assert_eq!(parse("  abc.def.ghi "), Presented::Token("abc.def.ghi"));
    }

    #[test]
    fn other_schemes_and_junk_are_malformed() {
        assert_eq!(parse("Basic dXNlcjpwYXNz"), Presented::Malformed);
        assert_eq!(parse("Bearer a b"), Presented::Malformed);
        assert_eq!(parse("Bearer "), Presented::Malformed);
        assert_eq!(parse("Bearer ==="), Presented::Malformed);
        assert_eq!(parse("tok\"en"), Presented::Malformed);
        assert_eq!(parse(&"a".repeat(MAX_TOKEN_LEN + 1)), Presented::Malformed);
        assert_eq!(parse(""), Presented::Missing);
    }

    #[test]
    fn dpop_scheme_tokens() {
        assert_eq!(parse("DPoP abc.def.ghi"), Presented::Dpop("abc.def.ghi"));
        assert_eq!(parse("dpop  abc"), Presented::Dpop("abc"));
        assert_eq!(parse("DPoP"), Presented::Malformed);
        assert_eq!(parse("DPoP a b"), Presented::Malformed);
        assert_eq!(parse("DPoP a\"b"), Presented::Malformed);
    }

    #[test]
    fn header_map_cases() {
        let mut h = HeaderMap::new();
        assert_eq!(extract(&h), Presented::Missing);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t1"));
        assert_eq!(extract(&h), Presented::Token("t1"));
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer t2"));
        assert_eq!(extract(&h), Presented::Malformed);
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert_eq!(extract(&h), Presented::Malformed);
        // Unchecked: the scheme is read, the token's characters are left to the caller.
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer a\"b"));
        assert_eq!(extract_unchecked(&h), Presented::Token("a\"b"));
        assert_eq!(extract(&h), Presented::Malformed);
        // Valid UTF-8 but not a token: refused as `to_str` refused it.
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes("Bearer t\u{e9}".as_bytes()).unwrap(),
        );
        assert_eq!(extract(&h), Presented::Malformed);
    }
}
