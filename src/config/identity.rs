//! What the upstream receives about the caller: the identity headers (gateway-wide in
//! `identity:` of tollgate.yaml, overridden key by key in an API's `identity:`), the
//! headers removed from every client request so nobody can forge them, and what the
//! credential itself becomes (kept, stripped, or replaced by a phantom token).

use super::errors::Errors;
use super::file::{CredentialModeFile, GatewayIdentityFile, HeaderChoice, IdentityHeadersFile};
use super::upstreams_file::ApiIdentityFile;
use crate::domain::claim::ClaimPath;
use http::HeaderName;
use std::collections::BTreeMap;
use std::time::Duration;

/// What the credential the client presented becomes on its way upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CredentialMode {
    /// Passed as it came (`Authorization`, or the API-key header).
    #[default]
    Keep,
    /// Removed: the upstream sees only the identity headers.
    Strip,
    /// Replaced by a short-lived JWT the gateway signs for this API (`Authorization:
    /// Bearer`), which the upstream verifies offline with the gateway's JWKS.
    Phantom,
}

/// The header of each identity field (`None`: not sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    /// `sub`: the user of a user's token, else the client (or the external subject).
    pub subject: Option<HeaderName>,
    pub client_id: Option<HeaderName>,
    /// The granted scopes, space-separated.
    pub scope: Option<HeaderName>,
    /// The way in: `jwt`, `opaque`, `api_key` or `external`.
    pub method: Option<HeaderName>,
    /// The external issuer's configured name (external tokens only).
    pub issuer: Option<HeaderName>,
    /// The name of the API key (API keys only).
    pub credential: Option<HeaderName>,
}

impl IdentityHeaders {
    /// The names, in a fixed order.
    pub fn names(&self) -> impl Iterator<Item = &HeaderName> {
        [
            &self.subject,
            &self.client_id,
            &self.scope,
            &self.method,
            &self.issuer,
            &self.credential,
        ]
        .into_iter()
        .flatten()
    }
}

/// What one API's upstream receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    pub headers: IdentityHeaders,
    /// Further headers, each with the claim it carries (arrays joined by the separator).
    pub claims: Vec<(HeaderName, ClaimPath)>,
    pub credential: CredentialMode,
}

/// The gateway-wide identity settings.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// What an API that says nothing gets.
    pub defaults: IdentityConfig,
    /// Joins the items of an array claim in a header.
    pub separator: String,
    /// Incoming headers under these prefixes are removed on every route, besides every
    /// configured identity header.
    pub remove_prefixes: Vec<String>,
    /// The longest a phantom token lives (never beyond the credential it stands for).
    pub phantom_lifetime: Duration,
}

const DEFAULT_PREFIX: &str = "x-auth-";

impl Default for IdentitySettings {
    fn default() -> Self {
        let h = HeaderName::from_static;
        Self {
            defaults: IdentityConfig {
                headers: IdentityHeaders {
                    subject: Some(h("x-auth-subject")),
                    client_id: Some(h("x-auth-client-id")),
                    scope: Some(h("x-auth-scope")),
                    method: Some(h("x-auth-method")),
                    issuer: Some(h("x-auth-issuer")),
                    credential: Some(h("x-auth-credential")),
                },
                claims: Vec::new(),
                credential: CredentialMode::Keep,
            },
            separator: ",".to_string(),
            remove_prefixes: vec![DEFAULT_PREFIX.to_string()],
            phantom_lifetime: Duration::from_secs(300),
        }
    }
}

/// Headers the gateway itself owns on the way upstream (or that frame the request): an
/// identity header may not take one of these names.
const RESERVED: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "cookie",
    "forwarded",
    "host",
    "keep-alive",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

fn header_name(text: &str, path: &str, errs: &mut Errors) -> Option<HeaderName> {
    let lower = text.to_ascii_lowercase();
    match HeaderName::from_bytes(lower.as_bytes()) {
        Ok(_) if RESERVED.contains(&lower.as_str()) || lower.starts_with("ratelimit") => {
            errs.push(
                path,
                format!("`{text}` is a header the gateway sets or needs itself"),
            );
            None
        }
        Ok(name) => Some(name),
        Err(_) => {
            errs.push(path, format!("`{text}` is not a header name"));
            None
        }
    }
}

/// One header field: as configured, off, or (absent) the default.
fn choice(
    c: Option<&HeaderChoice>,
    default: &Option<HeaderName>,
    path: &str,
    errs: &mut Errors,
) -> Option<HeaderName> {
    match c {
        None => default.clone(),
        Some(HeaderChoice::Off(false)) => None,
        Some(HeaderChoice::Off(true)) => {
            errs.push(path, "a header name, or `off` to leave it out");
            default.clone()
        }
        Some(HeaderChoice::Name(n)) if n.eq_ignore_ascii_case("off") => None,
        Some(HeaderChoice::Name(n)) => header_name(n, path, errs),
    }
}

fn headers(
    f: Option<&IdentityHeadersFile>,
    defaults: &IdentityHeaders,
    path: &str,
    errs: &mut Errors,
) -> IdentityHeaders {
    let Some(f) = f else {
        return defaults.clone();
    };
    let p = |key: &str| format!("{path}.headers.{key}");
    IdentityHeaders {
        subject: choice(f.subject.as_ref(), &defaults.subject, &p("subject"), errs),
        client_id: choice(
            f.client_id.as_ref(),
            &defaults.client_id,
            &p("client_id"),
            errs,
        ),
        scope: choice(f.scope.as_ref(), &defaults.scope, &p("scope"), errs),
        method: choice(f.method.as_ref(), &defaults.method, &p("method"), errs),
        issuer: choice(f.issuer.as_ref(), &defaults.issuer, &p("issuer"), errs),
        credential: choice(
            f.credential.as_ref(),
            &defaults.credential,
            &p("credential"),
            errs,
        ),
    }
}

fn claims(
    f: Option<&BTreeMap<String, String>>,
    defaults: &[(HeaderName, ClaimPath)],
    path: &str,
    errs: &mut Errors,
) -> Vec<(HeaderName, ClaimPath)> {
    let Some(f) = f else {
        return defaults.to_vec();
    };
    let mut out = Vec::new();
    for (header, claim) in f {
        let key = format!("{path}.claims.{header}");
        let name = header_name(header, &key, errs);
        let claim = match ClaimPath::parse(claim) {
            Ok(c) => Some(c),
            Err(e) => {
                errs.push(&key, e.to_string());
                None
            }
        };
        if let (Some(n), Some(c)) = (name, claim) {
            out.push((n, c));
        }
    }
    out
}

/// A header sent twice would carry one value and hide the other.
fn check_distinct(c: &IdentityConfig, path: &str, errs: &mut Errors) {
    let mut seen: Vec<&HeaderName> = Vec::new();
    for name in c.headers.names().chain(c.claims.iter().map(|(n, _)| n)) {
        if seen.contains(&name) {
            errs.push(path, format!("header `{name}` is given twice"));
        }
        seen.push(name);
    }
}

fn credential_mode(f: Option<&CredentialModeFile>, default: CredentialMode) -> CredentialMode {
    match f {
        None => default,
        Some(CredentialModeFile::Keep) => CredentialMode::Keep,
        Some(CredentialModeFile::Strip) => CredentialMode::Strip,
        Some(CredentialModeFile::Phantom) => CredentialMode::Phantom,
    }
}

/// `identity:` of the gateway file.
pub(super) fn gateway(f: GatewayIdentityFile, errs: &mut Errors) -> IdentitySettings {
    let builtin = IdentitySettings::default();
    let defaults = IdentityConfig {
        headers: headers(
            f.headers.as_ref(),
            &builtin.defaults.headers,
            "identity",
            errs,
        ),
        claims: claims(f.claims.as_ref(), &[], "identity", errs),
        credential: credential_mode(f.credential.as_ref(), CredentialMode::Keep),
    };
    check_distinct(&defaults, "identity", errs);
    let separator = f.separator.unwrap_or(builtin.separator);
    if separator.is_empty()
        || separator.len() > 8
        || separator.bytes().any(|b| b.is_ascii_control())
    {
        errs.push(
            "identity.separator",
            "1-8 printable characters (the default is `,`)",
        );
    }
    let remove_prefixes: Vec<String> = f
        .remove_prefixes
        .unwrap_or(builtin.remove_prefixes)
        .into_iter()
        .map(|p| p.to_ascii_lowercase())
        .collect();
    for (i, p) in remove_prefixes.iter().enumerate() {
        let valid = !p.is_empty() && HeaderName::from_bytes(p.as_bytes()).is_ok();
        let takes_reserved = RESERVED.iter().any(|r| r.starts_with(p.as_str()));
        if !valid || takes_reserved || p.len() < 3 {
            errs.push(
                format!("identity.remove_prefixes[{i}]"),
                format!(
                    "`{p}`: a header-name prefix of at least 3 characters that no header the gateway needs begins with"
                ),
            );
        }
    }
    let phantom_lifetime = match &f.phantom_lifetime {
        None => builtin.phantom_lifetime,
        Some(t) => match super::parse_duration(t.as_str()) {
            Ok(d) if (Duration::from_secs(10)..=Duration::from_secs(3600)).contains(&d) => d,
            Ok(_) => {
                errs.push("identity.phantom_lifetime", "between 10s and 1h");
                builtin.phantom_lifetime
            }
            Err(e) => {
                errs.push("identity.phantom_lifetime", e);
                builtin.phantom_lifetime
            }
        },
    };
    IdentitySettings {
        defaults,
        separator,
        remove_prefixes,
        phantom_lifetime,
    }
}

/// An API's `identity:`, over the gateway-wide defaults; the API-key header may not be
/// one of its identity headers.
pub(super) fn api(
    f: Option<&ApiIdentityFile>,
    defaults: &IdentityConfig,
    api_key_header: &HeaderName,
    path: &str,
    errs: &mut Errors,
) -> IdentityConfig {
    let path = format!("{path}.identity");
    let c = match f {
        None => defaults.clone(),
        Some(f) => IdentityConfig {
            headers: headers(f.headers.as_ref(), &defaults.headers, &path, errs),
            claims: claims(f.claims.as_ref(), &defaults.claims, &path, errs),
            credential: credential_mode(f.credential.as_ref(), defaults.credential),
        },
    };
    check_distinct(&c, &path, errs);
    if c.headers
        .names()
        .chain(c.claims.iter().map(|(n, _)| n))
        .any(|n| n == api_key_header)
    {
        errs.push(
            &path,
            format!("`{api_key_header}` is this API's API-key header"),
        );
    }
    c
}
