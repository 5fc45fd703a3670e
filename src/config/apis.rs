//! Validation of the APIs of the upstreams file: routes, auth, rate limits and scope rules
//! (their upstream pools: `pool.rs`).

use super::errors::Errors;
use super::identity::IdentityConfig;
use super::upstreams_file::{ApiFile, AuthFile, AuthWord, DpopMode, RateLimitFile};
use super::{ApiConfig, AuthMode, IssuerRef, RateLimit, parse_duration};
use crate::domain::scope::{Rule, is_valid_scope_token};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// Paths the gateway answers itself; no API may claim them.
const RESERVED_PREFIXES: [&str; 5] = [
    "/auth",
    "/credential",
    "/.well-known",
    "/oauth2",
    "/userinfo",
];

/// The issuer name that stands for the gateway's own tokens.
pub(super) const TOLLGATE_ISSUER: &str = "tollgate";

pub(super) fn auth_mode(a: &AuthFile, path: &str, errs: &mut Errors) -> AuthMode {
    let written: &[String] = match a {
        AuthFile::One(w) => std::slice::from_ref(w),
        AuthFile::Many(list) => list,
    };
    let mut words = Vec::new();
    for w in written {
        match AuthWord::parse(w) {
            Some(word) => words.push(word),
            None => errs.push(
                path,
                format!("unknown auth mode `{w}` (expected none, jwt or api_key)"),
            ),
        }
    }
    if written.is_empty() {
        errs.push(path, "name at least one of none, jwt, api_key");
    }
    if words.contains(&AuthWord::None) && words.len() > 1 {
        errs.push(path, "`none` cannot be combined with another mode");
    }
    AuthMode {
        jwt: words.contains(&AuthWord::Jwt),
        api_key: words.contains(&AuthWord::ApiKey),
    }
}

pub(super) fn rate_limit(r: &RateLimitFile, path: &str, errs: &mut Errors) -> Option<RateLimit> {
    let per = match parse_duration(r.per.as_str()) {
        Ok(d) => d,
        Err(e) => {
            errs.push(format!("{path}.per"), e);
            return None;
        }
    };
    if r.requests == 0 {
        errs.push(format!("{path}.requests"), "must be at least 1");
        return None;
    }
    if per < Duration::from_millis(1) {
        errs.push(format!("{path}.per"), "must be at least 1ms");
        return None;
    }
    let burst = r.burst.unwrap_or(r.requests);
    if burst == 0 {
        errs.push(format!("{path}.burst"), "must be at least 1");
        return None;
    }
    Some(RateLimit {
        requests: r.requests,
        per,
        burst,
    })
}

pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The modes an API takes on any of its operations: its own `auth` and its rules'.
pub(super) fn any_auth(a: &ApiFile, errs: &mut Errors) -> AuthMode {
    a.rules
        .iter()
        .filter_map(|r| r.auth.as_ref())
        .fold(auth_mode(&a.auth, "", errs), |m, r| {
            let r = auth_mode(r, "", errs);
            AuthMode {
                jwt: m.jwt || r.jwt,
                api_key: m.api_key || r.api_key,
            }
        })
}

pub(super) fn api(
    a: ApiFile,
    path: &str,
    base_dir: &Path,
    issuer_names: &HashSet<String>,
    identity: &IdentityConfig,
    errs: &mut Errors,
) -> Option<ApiConfig> {
    let before = errs.count();
    let auth = auth_mode(&a.auth, &format!("{path}.auth"), errs);
    let rule_auth: Vec<Option<AuthMode>> = a
        .rules
        .iter()
        .enumerate()
        .map(|(j, r)| {
            r.auth
                .as_ref()
                .map(|m| auth_mode(m, &format!("{path}.rules[{j}].auth"), errs))
        })
        .collect();
    // What the API takes on any operation: the settings of each mode need it there.
    let any = rule_auth.iter().flatten().fold(auth, |m, r| AuthMode {
        jwt: m.jwt || r.jwt,
        api_key: m.api_key || r.api_key,
    });
    let issuers = match &a.issuers {
        None => vec![IssuerRef::Tollgate],
        Some(list) => {
            if !any.jwt {
                errs.push(format!("{path}.issuers"), "issuers need `auth: jwt`");
            }
            if list.is_empty() {
                errs.push(format!("{path}.issuers"), "name at least one issuer");
            }
            list.iter()
                .enumerate()
                .filter_map(|(i, name)| {
                    if name == TOLLGATE_ISSUER {
                        Some(IssuerRef::Tollgate)
                    } else if issuer_names.contains(name) {
                        Some(IssuerRef::External(name.clone()))
                    } else {
                        errs.push(
                            format!("{path}.issuers[{i}]"),
                            format!("no issuer is named `{name}` (`{TOLLGATE_ISSUER}` is the gateway itself)"),
                        );
                        None
                    }
                })
                .collect()
        }
    };
    let api_key_header = match &a.api_key_header {
        None => http::HeaderName::from_static("x-api-key"),
        Some(h) => {
            if !any.api_key {
                errs.push(format!("{path}.api_key_header"), "needs `auth: api_key`");
            }
            match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) if n != http::header::AUTHORIZATION => n,
                _ => {
                    errs.push(
                        format!("{path}.api_key_header"),
                        format!("`{h}` is not a header name other than Authorization"),
                    );
                    http::HeaderName::from_static("x-api-key")
                }
            }
        }
    };
    let api_rate = a
        .rate_limit
        .as_ref()
        .and_then(|r| rate_limit(r, &format!("{path}.rate_limit"), errs));
    if a.rate_limit.is_some() && any.is_none() {
        errs.push(
            format!("{path}.rate_limit"),
            "limits are per consumer: they need `auth: jwt` or `auth: api_key`",
        );
    }
    let rule_limits: Vec<Option<RateLimit>> = a
        .rules
        .iter()
        .enumerate()
        .map(|(j, r)| {
            r.rate_limit
                .as_ref()
                .and_then(|l| rate_limit(l, &format!("{path}.rules[{j}].rate_limit"), errs))
        })
        .collect();
    if !is_valid_name(&a.name) {
        errs.push(
            format!("{path}.name"),
            "a name is 1-64 characters of A-Z a-z 0-9 - _ .",
        );
    }
    if let Err(e) = check_prefix(&a.prefix) {
        errs.push(format!("{path}.prefix"), e);
    }
    let host = a.host.map(|h| h.to_ascii_lowercase());
    if let Some(h) = &host {
        let ok = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
        if !ok {
            errs.push(
                format!("{path}.host"),
                format!("`{h}` is not a host name (no port, no scheme)"),
            );
        }
    }
    let upstream = super::pool::upstream(a.upstream, &format!("{path}.upstream"), base_dir, errs);
    let audience = a.audience.unwrap_or_else(|| a.name.clone());
    if audience.is_empty() {
        errs.push(format!("{path}.audience"), "must not be empty");
    }
    // An operation's scopes and limits are checked against its caller: it needs one.
    for (j, r) in a.rules.iter().enumerate() {
        let mode = rule_auth.get(j).copied().flatten().unwrap_or(auth);
        if mode.is_none() && !(r.all_of.is_empty() && r.any_of.is_empty()) {
            errs.push(
                format!("{path}.rules[{j}]"),
                "scopes need a credential: this operation has `auth: none`",
            );
        }
        if mode.is_none() && r.rate_limit.is_some() {
            errs.push(
                format!("{path}.rules[{j}].rate_limit"),
                "limits are per consumer: this operation has `auth: none`",
            );
        }
    }
    if auth.is_none() && any.is_none() && !a.rules.is_empty() {
        errs.push(
            format!("{path}.rules"),
            "scope rules need `auth: jwt` or `auth: api_key` (on the API or on a rule)",
        );
    }
    let dpop_required = a.dpop == Some(DpopMode::Required);
    if dpop_required && !any.jwt {
        errs.push(format!("{path}.dpop"), "`dpop: required` needs `auth: jwt`");
    }
    let identity = super::identity::api(a.identity.as_ref(), identity, &api_key_header, path, errs);
    let mut rules = Vec::new();
    for (j, r) in a.rules.iter().enumerate() {
        match Rule::new(&r.methods, &r.path, &r.all_of, &r.any_of) {
            Ok(rule) => rules.push(rule),
            Err(list) => {
                for (key, msg) in list {
                    errs.push(format!("{path}.rules[{j}].{key}"), msg);
                }
            }
        }
    }
    // Declared scopes: as listed, or every scope the rules name.
    let scopes = match a.scopes {
        Some(list) => {
            for (i, sc) in list.iter().enumerate() {
                if !is_valid_scope_token(sc) {
                    errs.push(
                        format!("{path}.scopes[{i}]"),
                        format!("`{sc}` is not a valid scope"),
                    );
                }
            }
            list
        }
        None => {
            let mut named: Vec<String> = Vec::new();
            for r in &a.rules {
                for sc in r.all_of.iter().chain(&r.any_of) {
                    if !named.contains(sc) {
                        named.push(sc.clone());
                    }
                }
            }
            named
        }
    };
    if errs.count() > before {
        return None;
    }
    Some(ApiConfig {
        name: a.name,
        prefix: a.prefix,
        host,
        strip_prefix: a.strip_prefix,
        upstream: upstream?,
        auth,
        issuers,
        api_key_header,
        audience,
        rules,
        dpop_required,
        rule_auth,
        rule_limits,
        rate_limit: api_rate,
        scopes,
        identity,
    })
}

/// Why an API prefix is refused.
#[derive(Debug, thiserror::Error)]
enum PrefixError {
    #[error("`{0}` must start with `/`")]
    NoSlash(String),
    #[error("`{0}` must not end with `/`")]
    TrailingSlash(String),
    #[error("`{0}` must be a plain path (no `//`, `?`, `#`, `%`, `*`, spaces)")]
    NotPlain(String),
    #[error("`{0}` must not contain `.` or `..` segments")]
    DotSegment(String),
    #[error("`{prefix}` is answered by the token service ({reserved}/...)")]
    Reserved {
        prefix: String,
        reserved: &'static str,
    },
}

fn check_prefix(prefix: &str) -> Result<(), PrefixError> {
    if !prefix.starts_with('/') {
        return Err(PrefixError::NoSlash(prefix.to_string()));
    }
    if prefix.len() > 1 && prefix.ends_with('/') {
        return Err(PrefixError::TrailingSlash(prefix.to_string()));
    }
    if prefix.contains("//") || prefix.contains(['?', '#', '%', '*', '\\', ' ']) {
        return Err(PrefixError::NotPlain(prefix.to_string()));
    }
    if prefix.split('/').any(|s| s == "." || s == "..") {
        return Err(PrefixError::DotSegment(prefix.to_string()));
    }
    for reserved in RESERVED_PREFIXES {
        if prefix == reserved || prefix.starts_with(&format!("{reserved}/")) {
            return Err(PrefixError::Reserved {
                prefix: prefix.to_string(),
                reserved,
            });
        }
    }
    Ok(())
}

pub(super) fn check_api_uniqueness(apis: &[ApiConfig], errs: &mut Errors) {
    let mut names = HashSet::new();
    let mut routes = HashSet::new();
    for (i, a) in apis.iter().enumerate() {
        if !names.insert(a.name.as_str()) {
            errs.push(
                format!("apis[{i}].name"),
                format!("API `{}` is defined twice", a.name),
            );
        }
        if !routes.insert((a.host.as_deref(), a.prefix.as_str())) {
            errs.push(
                format!("apis[{i}].prefix"),
                format!(
                    "another API already routes {} {}",
                    a.host.as_deref().unwrap_or("(any host)"),
                    a.prefix
                ),
            );
        }
    }
}
