//! Opaque tokens: a recognisable prefix and 256 random bits, base64url. The gateway keeps
//! only their SHA-256; the prefix tells an access token from a refresh token at a glance
//! (and lets secret scanners find leaked ones).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

pub const ACCESS_PREFIX: &str = "tga_";
pub const REFRESH_PREFIX: &str = "tgr_";
/// Prefix plus 43 base64url characters.
const LEN: usize = 4 + 43;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Access,
    Refresh,
}

/// A new random token of `kind`; `None` only if the system has no randomness.
pub fn generate(kind: Kind) -> Option<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    let prefix = match kind {
        Kind::Access => ACCESS_PREFIX,
        Kind::Refresh => REFRESH_PREFIX,
    };
    let mut out = String::with_capacity(LEN);
    out.push_str(prefix);
    B64.encode_string(bytes, &mut out);
    Some(out)
}

/// A new API key: `tgk_` and 256 random bits, base64url (the prefix lets secret scanners
/// find leaked ones).
pub fn generate_api_key() -> Option<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    let mut out = String::with_capacity(LEN);
    out.push_str("tgk_");
    B64.encode_string(bytes, &mut out);
    Some(out)
}

/// Which kind of opaque token `token` looks like, if any.
pub fn kind_of(token: &str) -> Option<Kind> {
    if token.len() != LEN {
        return None;
    }
    if token.starts_with(ACCESS_PREFIX) {
        Some(Kind::Access)
    } else if token.starts_with(REFRESH_PREFIX) {
        Some(Kind::Refresh)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_recognised() {
        let a = generate(Kind::Access).unwrap();
        let b = generate(Kind::Access).unwrap();
        let r = generate(Kind::Refresh).unwrap();
        assert_ne!(a, b);
        assert_eq!(kind_of(&a), Some(Kind::Access));
        assert_eq!(kind_of(&r), Some(Kind::Refresh));
        assert_eq!(kind_of("tga_short"), None);
        assert_eq!(kind_of("eyJhbGciOi.x.y"), None);
        assert!(
            a[4..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
