//! What the authorization code flow needs of a client: its redirect URIs (checked as
//! RFC 6749 §3.1.2 and RFC 8252 say), the origins its browser app calls from, consent and
//! whether it is public.

use super::super::GrantType;
use super::super::errors::Errors;
use super::super::upstreams_file::AuthMethodFile;
use super::super::{BrowserClient, ConsentMode};

/// The authorization-code fields of a client, as written.
pub(super) struct BrowserFields {
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub consent: Option<ConsentMode>,
    pub auth_method: Option<AuthMethodFile>,
    pub name: Option<String>,
}

/// A redirect URI a client may register: absolute, no fragment; https, http on a loopback
/// address, or a private-use scheme of a native app (RFC 8252 §7.1, e.g. `com.example.app:/cb`).
fn check_redirect_uri(uri: &str) -> Result<(), RedirectUriError> {
    let parsed = reqwest::Url::parse(uri).map_err(|source| RedirectUriError::NotAbsolute {
        uri: uri.to_string(),
        source,
    })?;
    if parsed.fragment().is_some() {
        return Err(RedirectUriError::Fragment(uri.to_string()));
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if crate::domain::net::is_loopback_redirect(&parsed) => Ok(()),
        "http" => Err(RedirectUriError::PlainHttp(uri.to_string())),
        scheme if scheme.contains('.') => Ok(()),
        _ => Err(RedirectUriError::Scheme(uri.to_string())),
    }
}

/// Why a redirect URI cannot be registered.
#[derive(Debug, thiserror::Error)]
enum RedirectUriError {
    #[error("`{uri}` is not an absolute URI: {source}")]
    NotAbsolute {
        uri: String,
        source: url::ParseError,
    },
    #[error("`{0}` has a fragment (RFC 6749 §3.1.2)")]
    Fragment(String),
    #[error("`{0}`: plain http only for loopback addresses (http://127.0.0.1, http://[::1])")]
    PlainHttp(String),
    #[error(
        "`{0}`: use https, a loopback http address, or a reverse-domain scheme (com.example.app:/cb)"
    )]
    Scheme(String),
}

pub(super) fn browser_client(
    b: BrowserFields,
    client_id: &str,
    grant_types: &[GrantType],
    has_secret: bool,
    path: &str,
    errs: &mut Errors,
) -> BrowserClient {
    for (key, list) in [
        ("redirect_uris", &b.redirect_uris),
        ("post_logout_redirect_uris", &b.post_logout_redirect_uris),
    ] {
        for (i, uri) in list.iter().enumerate() {
            if let Err(e) = check_redirect_uri(uri) {
                errs.push(format!("{path}.{key}[{i}]"), e);
            }
        }
    }
    for (i, o) in b.allowed_origins.iter().enumerate() {
        let ok = reqwest::Url::parse(o).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.path() == "/"
                && u.query().is_none()
                && !o.ends_with('/')
        });
        if !ok {
            errs.push(
                format!("{path}.allowed_origins[{i}]"),
                format!("`{o}` is not an origin (scheme://host[:port], no path)"),
            );
        }
    }
    let public = b.auth_method == Some(AuthMethodFile::None);
    let code = grant_types.contains(&GrantType::AuthorizationCode);
    if code && b.redirect_uris.is_empty() {
        errs.push(
            format!("{path}.redirect_uris"),
            "the authorization_code grant needs at least one redirect URI",
        );
    }
    if !code && !b.redirect_uris.is_empty() {
        errs.push(
            format!("{path}.grant_types"),
            "redirect_uris are set: add authorization_code to grant_types",
        );
    }
    if public {
        if has_secret {
            errs.push(
                format!("{path}.client_secret_hash"),
                "a public client (`token_endpoint_auth_method: none`) has no secret",
            );
        }
        if let Some(g) = grant_types
            .iter()
            .find(|g| !matches!(g, GrantType::AuthorizationCode | GrantType::RefreshToken))
        {
            errs.push(
                format!("{path}.grant_types"),
                format!(
                    "a public client may use only authorization_code and refresh_token, not {}",
                    g.as_str()
                ),
            );
        }
    } else if !has_secret {
        errs.push(
            format!("{path}.client_secret_hash"),
            "required (or `token_endpoint_auth_method: none` for a public client)",
        );
    }
    BrowserClient {
        redirect_uris: b.redirect_uris,
        post_logout_redirect_uris: b.post_logout_redirect_uris,
        allowed_origins: b.allowed_origins,
        skip_consent: b.consent == Some(ConsentMode::Skip),
        public,
        name: b
            .name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| client_id.to_string()),
    }
}
