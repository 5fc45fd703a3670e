//! Redirect URIs: registered per client and matched exactly (RFC 9700 §4.1.3), except the
//! port of a loopback `http://127.0.0.1` or `http://[::1]` redirect, which a native app
//! picks when it starts (RFC 8252 §7.3); and the authorization response appended to one.

use crate::domain::net::is_loopback_redirect;
use reqwest::Url;

/// Whether `presented` is one of `registered`: the same string, or a loopback URI that
/// differs only in its port.
pub fn matches(registered: &[String], presented: &str) -> bool {
    if registered.iter().any(|r| r == presented) {
        return true;
    }
    let Ok(p) = Url::parse(presented) else {
        return false;
    };
    if !is_loopback_redirect(&p) {
        return false;
    }
    registered.iter().any(|r| {
        Url::parse(r).is_ok_and(|r| {
            is_loopback_redirect(&r)
                && r.host() == p.host()
                && r.path() == p.path()
                && r.query() == p.query()
                && r.fragment().is_none()
                && p.fragment().is_none()
                && r.username() == p.username()
                && r.password() == p.password()
        })
    })
}

/// `uri` with `params` added to its query (RFC 6749 §4.1.2: keeping its own query).
pub fn with_params(uri: &str, params: &[(&str, &str)]) -> Option<String> {
    let mut u = Url::parse(uri).ok()?;
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    Some(u.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_except_loopback_ports() {
        let reg = vec![
            "https://app.example/cb".to_string(),
            "http://127.0.0.1/callback".to_string(),
            "http://[::1]:8000/cb".to_string(),
            "com.example.app:/oauth".to_string(),
        ];
        assert!(matches(&reg, "https://app.example/cb"));
        assert!(!matches(&reg, "https://app.example/cb/"));
        assert!(!matches(&reg, "https://app.example/cb?x=1"));
        assert!(!matches(&reg, "https://app.example:444/cb"));
        assert!(!matches(&reg, "https://evil.example/cb"));
        assert!(matches(&reg, "http://127.0.0.1:53127/callback"));
        assert!(matches(&reg, "http://127.0.0.1/callback"));
        assert!(!matches(&reg, "http://127.0.0.1:53127/other"));
        assert!(!matches(&reg, "http://localhost:53127/callback"));
        assert!(matches(&reg, "http://[::1]:9/cb"));
        assert!(!matches(&reg, "http://127.0.0.1:1/cb"));
        assert!(matches(&reg, "com.example.app:/oauth"));
        assert!(!matches(&reg, "com.example.app:/oauth2"));
        assert!(!matches(&reg, "http://127.0.0.1:5/callback#x"));
    }

    #[test]
    fn responses_keep_the_uris_own_query() {
        assert_eq!(
            with_params(
                "https://a.example/cb?x=1",
                &[("code", "c"), ("state", "s t")]
            )
            .unwrap(),
            "https://a.example/cb?x=1&code=c&state=s+t"
        );
    }
}
