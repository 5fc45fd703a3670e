//! Loopback addresses, as the browser flow judges them: a native app's redirect URI
//! (RFC 8252) and a developer's plain-http issuer.

use reqwest::Url;

/// The host of `u` is a loopback IP literal (`127.0.0.1`, `[::1]`).
pub fn has_loopback_ip(u: &Url) -> bool {
    u.host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|h| h.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback())
}

/// A loopback redirect URI: `http://127.0.0.1` or `http://[::1]`, with any port. RFC 8252
/// §8.3 asks for IP literals: `localhost` may resolve elsewhere, so it does not count.
pub fn is_loopback_redirect(u: &Url) -> bool {
    u.scheme() == "http" && has_loopback_ip(u)
}

/// A plain-http address on the developer's own machine: a loopback IP or `localhost`
/// (the browser flow allows its cookies without TLS there, as browsers do).
pub fn is_local_http(u: &Url) -> bool {
    u.scheme() == "http" && (u.host_str() == Some("localhost") || has_loopback_ip(u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn loopback_redirects_are_ip_literals_only() {
        assert!(is_loopback_redirect(&url("http://127.0.0.1:8080/cb")));
        assert!(is_loopback_redirect(&url("http://[::1]/cb")));
        assert!(!is_loopback_redirect(&url("http://localhost/cb")));
        assert!(!is_loopback_redirect(&url("https://127.0.0.1/cb")));
        assert!(!is_loopback_redirect(&url("http://10.0.0.1/cb")));
    }

    #[test]
    fn local_http_includes_localhost() {
        assert!(is_local_http(&url("http://localhost:8080")));
        assert!(is_local_http(&url("http://127.0.0.1")));
        assert!(!is_local_http(&url("https://localhost")));
        assert!(!is_local_http(&url("http://example.com")));
    }
}
