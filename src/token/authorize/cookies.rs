//! The browser flow's cookies: the flow binding and the session. Over TLS they are
//! `__Host-` cookies (Secure, Path=/, no Domain), HttpOnly and SameSite=Lax; on a plain
//! loopback issuer (a developer's machine) the same without the prefix and `Secure`,
//! which a browser would refuse over http.

use http::HeaderValue;

pub const FLOW: &str = "tollgate-flow";
pub const SESSION: &str = "tollgate-session";

fn name(base: &str, tls: bool) -> String {
    if tls {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

/// The value of cookie `base` in a `Cookie` header.
pub fn get<'a>(header: Option<&'a str>, base: &str, tls: bool) -> Option<&'a str> {
    let wanted = name(base, tls);
    header?.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == wanted).then_some(v).filter(|v| !v.is_empty())
    })
}

/// `Set-Cookie` for `base` = `value`; `max_age` `None` for a cookie that ends with the
/// browser session, `Some(0)` to delete it.
pub fn set(base: &str, value: &str, max_age: Option<u64>, tls: bool) -> Option<HeaderValue> {
    let mut c = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax",
        name(base, tls)
    );
    if tls {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&c).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_prefixed_over_tls() {
        let h = set(SESSION, "abc", None, true).unwrap();
        assert_eq!(
            h,
            "__Host-tollgate-session=abc; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        let header = Some("a=1; __Host-tollgate-session=abc; tollgate-session=plain");
        assert_eq!(get(header, SESSION, true), Some("abc"));
        assert_eq!(get(header, SESSION, false), Some("plain"));
        assert_eq!(get(Some("x=1"), SESSION, true), None);
        let gone = set(FLOW, "", Some(0), false).unwrap();
        assert_eq!(
            gone,
            "tollgate-flow=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
        );
    }
}
