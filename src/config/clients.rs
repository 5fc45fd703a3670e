//! Validation of the token service's clients: auth policies, credentials, the products that
//! group APIs for credentials, and the user pools of the password grant.

use super::apis::is_valid_name;
use super::errors::duration;
mod browser;
mod mtls;

use super::errors::Errors;
use super::upstreams_file::{
    ApiKeyFile, CredentialFile, ExchangeFile, FormatChoice, PolicyFile, ProductFile,
    TokenSettingsFile, UserPoolFile,
};
use super::{
    AuthMode, ClientConfig, CredentialConfig, GrantType, PolicyConfig, PolicyKind, TokenPolicy,
    UserConfig, UserPoolConfig,
};
use crate::domain::scope::is_valid_scope_token;
use crate::domain::secret::Secret;
use browser::{BrowserFields, browser_client};
use mtls::{CertificateFields, certificate_auth};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const DEFAULT_REFRESH_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// What client definitions may refer to.
pub(super) struct Refs<'a> {
    /// Every API the file declares, with its auth mode.
    pub apis: &'a [(String, AuthMode)],
    /// Product name → its APIs.
    pub products: &'a HashMap<String, Vec<String>>,
    pub pools: &'a HashSet<String>,
    /// External issuers' names.
    pub issuers: &'a HashSet<String>,
    /// Relative paths (pinned certificates) are resolved against it.
    pub base_dir: &'a std::path::Path,
}

pub(super) const NAME_RULE: &str = "a name is 1-64 characters of A-Z a-z 0-9 - _ .";

pub(super) fn check_api_refs(
    names: &[String],
    key: &str,
    path: &str,
    declared: &[(String, AuthMode)],
    errs: &mut Errors,
) {
    for (i, n) in names.iter().enumerate() {
        match declared.iter().find(|(name, _)| name == n) {
            None => errs.push(
                format!("{path}.{key}[{i}]"),
                format!("no API is named `{n}`"),
            ),
            Some((_, m)) if m.is_none() => errs.push(
                format!("{path}.{key}[{i}]"),
                format!("API `{n}` has `auth: none`, so its tokens would never be checked"),
            ),
            Some(_) => {}
        }
    }
}

pub(super) fn check_scopes(list: &[String], path: &str, key: &str, errs: &mut Errors) {
    for (i, s) in list.iter().enumerate() {
        if !is_valid_scope_token(s) {
            errs.push(
                format!("{path}.{key}[{i}]"),
                format!("`{s}` is not a valid scope"),
            );
        }
    }
}

pub(super) fn products(
    items: Vec<(String, ProductFile)>,
    declared: &[(String, AuthMode)],
    errs: &mut Errors,
) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    for (path, p) in items {
        if !is_valid_name(&p.name) {
            errs.push(format!("{path}.name"), NAME_RULE);
        }
        if p.apis.is_empty() {
            errs.push(format!("{path}.apis"), "name at least one API");
        }
        check_api_refs(&p.apis, "apis", &path, declared, errs);
        if out.insert(p.name.clone(), p.apis).is_some() {
            errs.push(
                format!("{path}.name"),
                format!("product `{}` is defined twice", p.name),
            );
        }
    }
    out
}

pub(super) fn user_pools(
    items: Vec<(String, UserPoolFile)>,
    declared: &[(String, AuthMode)],
    errs: &mut Errors,
) -> Vec<UserPoolConfig> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (path, p) in items {
        if !is_valid_name(&p.name) {
            errs.push(format!("{path}.name"), NAME_RULE);
        }
        if !names.insert(p.name.clone()) {
            errs.push(
                format!("{path}.name"),
                format!("user pool `{}` is defined twice", p.name),
            );
        }
        let mut usernames = HashSet::new();
        let mut users = Vec::new();
        for (j, u) in p.users.into_iter().enumerate() {
            let upath = format!("{path}.users[{j}]");
            if u.username.is_empty()
                || u.username.len() > 128
                || u.username.chars().any(char::is_control)
            {
                errs.push(
                    format!("{upath}.username"),
                    "a username is 1-128 characters, no control characters",
                );
            }
            if !usernames.insert(u.username.clone()) {
                errs.push(
                    format!("{upath}.username"),
                    format!("user `{}` is listed twice", u.username),
                );
            }
            if let Err(e) = crate::domain::secret::check_hash(&u.password_hash) {
                errs.push(format!("{upath}.password_hash"), e);
            }
            check_scopes(&u.roles, &upath, "roles", errs);
            if let Some(acl) = &u.acl {
                check_api_refs(acl, "acl", &upath, declared, errs);
            }
            users.push(UserConfig {
                username: u.username,
                password_hash: Secret::new(u.password_hash),
                roles: u.roles,
                acl: u.acl,
                email: u.email,
                name: u.name,
            });
        }
        out.push(UserPoolConfig {
            name: p.name,
            users,
        });
    }
    out
}

pub(super) fn is_valid_client_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| (0x21..=0x7E).contains(&b) && b != b'"' && b != b'\\')
}

/// The fields every client has, validated the same way for policies and credentials.
struct ClientFields {
    client_id: String,
    hash: Option<String>,
    public: bool,
    grant_types: Vec<GrantType>,
    scopes: Vec<String>,
    scopes_key: &'static str,
    user_pool: Option<String>,
    token: TokenSettingsFile,
    /// Formats the client may get, when its kind decides them (policies).
    kind_formats: Option<(bool, bool)>,
    api_keys: Vec<ApiKeyFile>,
    exchange: Option<ExchangeFile>,
    browser: BrowserFields,
    dpop_bound: bool,
    certificate: CertificateFields,
    certificate_bound: bool,
}

fn client(
    f: ClientFields,
    path: &str,
    refs: &Refs,
    client_ids: &mut HashSet<String>,
    errs: &mut Errors,
) -> ClientConfig {
    if !is_valid_client_id(&f.client_id) {
        errs.push(
            format!("{path}.client_id"),
            "a client_id is 1-128 printable ASCII characters without spaces, quotes or backslashes",
        );
    } else if !client_ids.insert(f.client_id.clone()) {
        errs.push(
            format!("{path}.client_id"),
            format!("client_id `{}` is used twice", f.client_id),
        );
    }
    if let Some(hash) = &f.hash
        && let Err(e) = crate::domain::secret::check_hash(hash)
    {
        errs.push(format!("{path}.client_secret_hash"), e);
    }
    check_scopes(&f.scopes, path, f.scopes_key, errs);
    let mut token = token_policy(f.token, f.kind_formats, &format!("{path}.token"), errs);
    token.dpop_bound = f.dpop_bound;
    token.certificate_bound = f.certificate_bound;
    if f.dpop_bound && f.certificate_bound {
        errs.push(
            format!("{path}.tls_client_certificate_bound_access_tokens"),
            "a client's tokens are bound to a DPoP key or to its certificate, not both \
             (dpop_bound_access_tokens is set)",
        );
    }
    let certificate_auth = certificate_auth(
        f.certificate,
        &mtls::Context {
            method: f.browser.auth_method,
            has_secret: f.hash.is_some(),
            public: f.public,
            path,
            base_dir: refs.base_dir,
        },
        errs,
    );
    let authenticates = f.hash.is_some() || certificate_auth.is_some();

    let mut grant_types = if f.grant_types.is_empty() {
        vec![GrantType::ClientCredentials]
    } else {
        f.grant_types
    };
    if grant_types.contains(&GrantType::RefreshToken) && token.refresh.is_none() {
        errs.push(
            format!("{path}.grant_types"),
            "refresh_token needs `token: {{ refresh: true }}`",
        );
    }
    if token.refresh.is_some() && !grant_types.contains(&GrantType::RefreshToken) {
        grant_types.push(GrantType::RefreshToken);
    }
    let mut key_names = HashSet::new();
    let mut api_keys = Vec::new();
    for (i, k) in f.api_keys.iter().enumerate() {
        let kpath = format!("{path}.api_keys[{i}]");
        if !is_valid_name(&k.name) {
            errs.push(format!("{kpath}.name"), NAME_RULE);
        }
        if !key_names.insert(k.name.clone()) {
            errs.push(
                format!("{kpath}.name"),
                format!("key `{}` is listed twice", k.name),
            );
        }
        match parse_sha256(&k.sha256) {
            Some(d) => api_keys.push((k.name.clone(), d)),
            None => errs.push(
                format!("{kpath}.sha256"),
                "64 hex digits: the SHA-256 `tollgate api-key --generate` prints",
            ),
        }
    }
    let exchange_issuers = match &f.exchange {
        None => Vec::new(),
        Some(x) => {
            if x.issuers.is_empty() {
                errs.push(
                    format!("{path}.token_exchange.issuers"),
                    "name at least one issuer",
                );
            }
            for (i, name) in x.issuers.iter().enumerate() {
                if !refs.issuers.contains(name) {
                    errs.push(
                        format!("{path}.token_exchange.issuers[{i}]"),
                        format!("no issuer is named `{name}`"),
                    );
                }
            }
            x.issuers.clone()
        }
    };
    match (
        grant_types.contains(&GrantType::TokenExchange),
        exchange_issuers.is_empty(),
    ) {
        (true, true) => errs.push(
            format!("{path}.token_exchange"),
            "the token_exchange grant needs `token_exchange: { issuers: [...] }`",
        ),
        (false, false) => errs.push(
            format!("{path}.grant_types"),
            "`token_exchange` is configured: add token_exchange to grant_types",
        ),
        _ => {}
    }
    match &f.user_pool {
        Some(pool) if !refs.pools.contains(pool) => {
            errs.push(
                format!("{path}.user_pool"),
                format!("no user pool is named `{pool}`"),
            );
        }
        None if grant_types.contains(&GrantType::Password) => {
            errs.push(
                format!("{path}.user_pool"),
                "the password grant needs a user pool",
            );
        }
        _ => {}
    }
    let browser = browser_client(
        f.browser,
        &f.client_id,
        &grant_types,
        authenticates,
        path,
        errs,
    );
    if grant_types.contains(&GrantType::AuthorizationCode) && f.user_pool.is_none() {
        errs.push(
            format!("{path}.user_pool"),
            "the authorization_code grant signs in users of a user pool",
        );
    }
    ClientConfig {
        browser,
        client_id: f.client_id,
        // A public client has no secret: a hash no secret matches.
        secret_hash: Secret::new(f.hash.unwrap_or_else(|| "!".into())),
        public: f.public,
        grant_types,
        scopes: f.scopes,
        user_pool: f.user_pool,
        token,
        secrets: Vec::new(),
        api_keys,
        exchange_issuers,
        tenant: None,
        certificate_auth,
    }
}

/// A SHA-256 digest written as 64 hex digits.
pub(super) fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn token_policy(
    t: TokenSettingsFile,
    kind_formats: Option<(bool, bool)>,
    path: &str,
    errs: &mut Errors,
) -> TokenPolicy {
    let access_token_lifetime = t.access_token_lifetime.map(|l| {
        let d = duration(
            Some(l.as_str()),
            format!("{path}.access_token_lifetime"),
            Duration::from_secs(900),
            errs,
        );
        if d < Duration::from_secs(1) {
            errs.push(
                format!("{path}.access_token_lifetime"),
                "must be at least 1s",
            );
        }
        d
    });
    if t.immortal && t.refresh {
        errs.push(
            format!("{path}.refresh"),
            "immortal tokens are never refreshed",
        );
    }
    if t.immortal && access_token_lifetime.is_some() {
        errs.push(
            format!("{path}.access_token_lifetime"),
            "immortal tokens have no lifetime",
        );
    }
    let refresh_lifetime = duration(
        t.refresh_token_lifetime.as_ref().map(|d| d.as_str()),
        format!("{path}.refresh_token_lifetime"),
        DEFAULT_REFRESH_LIFETIME,
        errs,
    );
    if t.refresh_token_lifetime.is_some() && !t.refresh {
        errs.push(
            format!("{path}.refresh_token_lifetime"),
            "needs `refresh: true`",
        );
    }
    let (jwt, opaque) = match (kind_formats, t.format) {
        (Some(_), Some(_)) => {
            errs.push(
                format!("{path}.format"),
                "a policy's token format comes from its `kind`",
            );
            (true, true)
        }
        (Some(formats), None) => formats,
        (None, Some(FormatChoice::Jwt)) => (true, false),
        (None, Some(FormatChoice::Opaque)) => (false, true),
        (None, Some(FormatChoice::Any) | None) => (true, true),
    };
    TokenPolicy {
        access_token_lifetime,
        immortal: t.immortal,
        refresh: t.refresh.then_some(refresh_lifetime),
        allow_url_parameters: t.allow_url_parameters,
        jwt,
        opaque,
        dpop_bound: false,
        certificate_bound: false,
    }
}

pub(super) fn policy(
    p: PolicyFile,
    path: &str,
    refs: &Refs,
    client_ids: &mut HashSet<String>,
    errs: &mut Errors,
) -> PolicyConfig {
    if !is_valid_name(&p.name) {
        errs.push(format!("{path}.name"), NAME_RULE);
    }
    if p.apis.is_empty() {
        errs.push(format!("{path}.apis"), "name at least one API");
    }
    check_api_refs(&p.apis, "apis", path, refs.apis, errs);
    let kind = p.kind.unwrap_or(PolicyKind::Jwt);
    let client = client(
        ClientFields {
            client_id: p.client_id,
            hash: p.client_secret_hash,
            public: p.public,
            grant_types: p.grant_types,
            scopes: p.scopes,
            scopes_key: "scopes",
            user_pool: p.user_pool,
            token: p.token,
            kind_formats: Some(match kind {
                PolicyKind::Jwt => (true, false),
                PolicyKind::Oauth2 => (false, true),
            }),
            api_keys: Vec::new(),
            exchange: None,
            dpop_bound: p.dpop_bound_access_tokens,
            certificate: CertificateFields {
                subject_dn: p.tls_client_auth_subject_dn,
                san_dns: p.tls_client_auth_san_dns,
                san_uri: p.tls_client_auth_san_uri,
                san_ip: p.tls_client_auth_san_ip,
                san_email: p.tls_client_auth_san_email,
                pins: p.tls_client_certificates,
            },
            certificate_bound: p.tls_client_certificate_bound_access_tokens,
            browser: BrowserFields {
                redirect_uris: p.redirect_uris,
                post_logout_redirect_uris: p.post_logout_redirect_uris,
                allowed_origins: p.allowed_origins,
                consent: p.consent,
                auth_method: p.token_endpoint_auth_method,
                name: p.client_name,
            },
        },
        path,
        refs,
        client_ids,
        errs,
    );
    PolicyConfig {
        name: p.name,
        kind,
        apis: p.apis,
        client,
    }
}

pub(super) fn credential(
    c: CredentialFile,
    path: &str,
    refs: &Refs,
    client_ids: &mut HashSet<String>,
    errs: &mut Errors,
) -> CredentialConfig {
    check_api_refs(&c.acl, "acl", path, refs.apis, errs);
    let mut acl = c.acl.clone();
    for (i, name) in c.products.iter().enumerate() {
        match refs.products.get(name) {
            Some(apis) => {
                for a in apis {
                    if !acl.contains(a) {
                        acl.push(a.clone());
                    }
                }
            }
            None => errs.push(
                format!("{path}.products[{i}]"),
                format!("no product is named `{name}`"),
            ),
        }
    }
    if c.acl.is_empty() && c.products.is_empty() {
        errs.push(
            format!("{path}.acl"),
            "name at least one API (in `acl` or through `products`)",
        );
    }
    let client = client(
        ClientFields {
            client_id: c.client_id,
            hash: c.client_secret_hash,
            public: false,
            grant_types: c.grant_types,
            scopes: c.roles,
            scopes_key: "roles",
            user_pool: c.user_pool,
            token: c.token,
            kind_formats: None,
            api_keys: c.api_keys,
            exchange: c.token_exchange,
            dpop_bound: c.dpop_bound_access_tokens,
            certificate: CertificateFields {
                subject_dn: c.tls_client_auth_subject_dn,
                san_dns: c.tls_client_auth_san_dns,
                san_uri: c.tls_client_auth_san_uri,
                san_ip: c.tls_client_auth_san_ip,
                san_email: c.tls_client_auth_san_email,
                pins: c.tls_client_certificates,
            },
            certificate_bound: c.tls_client_certificate_bound_access_tokens,
            browser: BrowserFields {
                redirect_uris: c.redirect_uris,
                post_logout_redirect_uris: c.post_logout_redirect_uris,
                allowed_origins: c.allowed_origins,
                consent: c.consent,
                auth_method: c.token_endpoint_auth_method,
                name: c.client_name,
            },
        },
        path,
        refs,
        client_ids,
        errs,
    );
    CredentialConfig { acl, client }
}
