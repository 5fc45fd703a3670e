//! Request-path normalization before routing and scope checks: merge `//`, resolve `.`
//! and `..`, and refuse encodings an upstream might decode differently from us (`%2F`,
//! `%5C`, `%00`, backslashes). What the rules see is what the upstream receives.

use std::borrow::Cow;

/// Why a path is refused (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPath {
    /// Not origin-form (`/...`).
    NotAbsolute,
    /// An encoded slash, backslash or NUL.
    AmbiguousEncoding,
    /// `..` above the root.
    EscapesRoot,
}

impl BadPath {
    pub fn message(self) -> &'static str {
        match self {
            BadPath::NotAbsolute => "the request path must start with /",
            BadPath::AmbiguousEncoding => {
                "the request path contains an encoded slash, backslash or NUL"
            }
            BadPath::EscapesRoot => "the request path climbs above the root",
        }
    }
}

/// The normalized path: borrowed when it was already clean (the common case, no allocation).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, BadPath> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(BadPath::NotAbsolute);
    }
    let mut needs_work = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' | 0 => return Err(BadPath::AmbiguousEncoding),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
                if hex.eq_ignore_ascii_case(b"2f")
                    || hex.eq_ignore_ascii_case(b"5c")
                    || hex == b"00"
                {
                    return Err(BadPath::AmbiguousEncoding);
                }
                if hex.eq_ignore_ascii_case(b"2e") {
                    needs_work = true;
                }
            }
            b'/' if matches!(bytes.get(i + 1), Some(b'/') | Some(b'.')) => needs_work = true,
            _ => {}
        }
    }
    if !needs_work {
        return Ok(Cow::Borrowed(path));
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match dots(seg) {
            Some(1) => trailing_slash = i == last,
            Some(2) => {
                if out.pop().is_none() {
                    return Err(BadPath::EscapesRoot);
                }
                trailing_slash = i == last;
            }
            _ if seg.is_empty() => trailing_slash = i == last,
            _ => {
                out.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if out.is_empty() || trailing_slash {
        s.push('/');
    }
    if s == path {
        return Ok(Cow::Borrowed(path));
    }
    Ok(Cow::Owned(s))
}

/// `Some(n)` when the segment is `n` dots (1 or 2), plain or percent-encoded.
fn dots(seg: &str) -> Option<usize> {
    let mut n = 0;
    let mut rest = seg.as_bytes();
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[0] == b'%' && rest[1..3].eq_ignore_ascii_case(b"2e") {
            rest = &rest[3..];
        } else {
            return None;
        }
        n += 1;
    }
    (n == 1 || n == 2).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> String {
        normalize(p).unwrap().into_owned()
    }

    #[test]
    fn clean_paths_are_borrowed() {
        for p in [
            "/",
            "/orders",
            "/orders/1",
            "/a/b.c/d",
            "/v1/x%20y",
            "/.well-known-ish",
        ] {
            assert!(matches!(normalize(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn slashes_and_dots_are_resolved() {
        assert_eq!(ok("//orders//1"), "/orders/1");
        assert_eq!(ok("/orders/./1"), "/orders/1");
        assert_eq!(ok("/public/../admin"), "/admin");
        assert_eq!(ok("/public/%2e%2E/admin"), "/admin");
        assert_eq!(ok("/public/.%2e/admin/"), "/admin/");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a/."), "/a/");
        assert_eq!(ok("/."), "/");
        assert_eq!(ok("/a/..."), "/a/...");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        assert_eq!(normalize("orders"), Err(BadPath::NotAbsolute));
        assert_eq!(normalize("*"), Err(BadPath::NotAbsolute));
        assert_eq!(normalize("/a%2fb"), Err(BadPath::AmbiguousEncoding));
        assert_eq!(normalize("/a%5Cb"), Err(BadPath::AmbiguousEncoding));
        assert_eq!(normalize("/a\\b"), Err(BadPath::AmbiguousEncoding));
        assert_eq!(normalize("/a%00"), Err(BadPath::AmbiguousEncoding));
        assert_eq!(normalize("/../etc/passwd"), Err(BadPath::EscapesRoot));
        assert_eq!(normalize("/a/../../b"), Err(BadPath::EscapesRoot));
    }
}
