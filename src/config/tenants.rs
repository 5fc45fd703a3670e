//! Validation of the tenant directory (seed 003): tenants → projects → clients (with
//! several secrets, by id) and users by email (roles, scopes, resources, groups, admin).
//! Each tenant client is also a credential of the tenant's APIs, and each project's users
//! a user pool, so tenant tokens are checked on every request like any other.

use super::apis::is_valid_name;
use super::clients::{NAME_RULE, Refs, check_api_refs, check_scopes, is_valid_client_id};
use super::errors::Errors;
use super::errors::duration;
use super::upstreams_file::TenantFile;
use super::{
    ClientConfig, CredentialConfig, GrantType, ProjectConfig, TenantConfig, TenantUserConfig,
    TokenPolicy, UserConfig, UserPoolConfig,
};
use crate::domain::claim::ClaimPath;
use crate::domain::secret::Secret;
use std::collections::HashSet;
use std::time::Duration;

/// The pool that holds a project's users.
pub fn pool_name(tenant: &str, project: &str) -> String {
    format!("tenant:{tenant}:{project}")
}

/// A password hash no password matches: tenant users never use the password grant.
const NO_PASSWORD: &str = "!";

pub(super) struct Built {
    pub tenants: Vec<TenantConfig>,
    pub credentials: Vec<CredentialConfig>,
    pub pools: Vec<UserPoolConfig>,
}

pub(super) fn tenants(
    items: Vec<(String, TenantFile)>,
    refs: &Refs,
    client_ids: &mut HashSet<String>,
    errs: &mut Errors,
) -> Built {
    let mut built = Built {
        tenants: Vec::new(),
        credentials: Vec::new(),
        pools: Vec::new(),
    };
    let mut ids = HashSet::new();
    for (path, t) in items {
        if !is_valid_name(&t.id) {
            errs.push(format!("{path}.id"), NAME_RULE);
        }
        if !ids.insert(t.id.clone()) {
            errs.push(
                format!("{path}.id"),
                format!("tenant `{}` is defined twice", t.id),
            );
        }
        if t.apis.is_empty() {
            errs.push(format!("{path}.apis"), "name at least one API");
        }
        check_api_refs(&t.apis, "apis", &path, refs.apis, errs);
        for (i, name) in t.oidc_issuers.iter().enumerate() {
            if !refs.issuers.contains(name) {
                errs.push(
                    format!("{path}.oidc_issuers[{i}]"),
                    format!("no issuer is named `{name}`"),
                );
            }
        }
        let email_claim = match t.email_claim.as_deref().map(ClaimPath::parse) {
            None => ClaimPath::parse("email").unwrap_or_else(|_| ClaimPath::sub()),
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                errs.push(format!("{path}.email_claim"), e);
                ClaimPath::sub()
            }
        };
        let lifetime = t.access_token_lifetime.as_ref().map(|l| {
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
        let mut projects = Vec::new();
        let mut project_ids = HashSet::new();
        for (j, p) in t.projects.into_iter().enumerate() {
            let ppath = format!("{path}.projects[{j}]");
            if !is_valid_name(&p.id) {
                errs.push(format!("{ppath}.id"), NAME_RULE);
            }
            if !project_ids.insert(p.id.clone()) {
                errs.push(
                    format!("{ppath}.id"),
                    format!("project `{}` is listed twice", p.id),
                );
            }
            let pool = pool_name(&t.id, &p.id);
            let mut emails = HashSet::new();
            let mut users = Vec::new();
            for (k, u) in p.users.into_iter().enumerate() {
                let upath = format!("{ppath}.users[{k}]");
                let email = u.email.trim().to_ascii_lowercase();
                if !is_email(&email) {
                    errs.push(
                        format!("{upath}.email"),
                        format!("`{}` is not an email address", u.email),
                    );
                }
                if !emails.insert(email.clone()) {
                    errs.push(
                        format!("{upath}.email"),
                        format!("`{email}` is listed twice"),
                    );
                }
                check_scopes(&u.roles, &upath, "roles", errs);
                check_scopes(&u.scopes, &upath, "scopes", errs);
                for (key, list) in [("resources", &u.resources), ("groups", &u.groups)] {
                    for (i, v) in list.iter().enumerate() {
                        if v.is_empty() || v.len() > 256 || v.chars().any(char::is_control) {
                            errs.push(
                                format!("{upath}.{key}[{i}]"),
                                "1-256 characters, no control characters",
                            );
                        }
                    }
                }
                users.push(TenantUserConfig {
                    email,
                    roles: u.roles,
                    scopes: u.scopes,
                    resources: u.resources,
                    groups: u.groups,
                    admin: u.admin,
                });
            }
            let mut clients = Vec::new();
            for (k, c) in p.clients.into_iter().enumerate() {
                let cpath = format!("{ppath}.clients[{k}]");
                if !is_valid_client_id(&c.client_id) {
                    errs.push(
                        format!("{cpath}.client_id"),
                        "a client_id is 1-128 printable ASCII characters without spaces, quotes or backslashes",
                    );
                } else if !client_ids.insert(c.client_id.clone()) {
                    errs.push(
                        format!("{cpath}.client_id"),
                        format!("client_id `{}` is used twice", c.client_id),
                    );
                }
                if c.secrets.is_empty() {
                    errs.push(format!("{cpath}.secrets"), "list at least one secret");
                }
                let mut secret_ids = HashSet::new();
                for (i, sec) in c.secrets.iter().enumerate() {
                    if !is_valid_name(&sec.id) {
                        errs.push(format!("{cpath}.secrets[{i}].id"), NAME_RULE);
                    }
                    if !secret_ids.insert(sec.id.clone()) {
                        errs.push(
                            format!("{cpath}.secrets[{i}].id"),
                            format!("secret `{}` is listed twice", sec.id),
                        );
                    }
                    if let Err(e) = crate::domain::secret::check_hash(&sec.hash) {
                        errs.push(format!("{cpath}.secrets[{i}].hash"), e);
                    }
                }
                check_scopes(&c.roles, &cpath, "roles", errs);
                let secrets: Vec<(String, Secret<String>)> = c
                    .secrets
                    .into_iter()
                    .map(|s| (s.id, Secret::new(s.hash)))
                    .collect();
                clients.push(c.client_id.clone());
                built.credentials.push(CredentialConfig {
                    acl: t.apis.clone(),
                    client: ClientConfig {
                        client_id: c.client_id,
                        secret_hash: secrets
                            .first()
                            .map(|(_, h)| h.clone())
                            .unwrap_or_else(|| Secret::new(NO_PASSWORD.into())),
                        public: false,
                        grant_types: vec![GrantType::ClientCredentials],
                        scopes: c.roles,
                        user_pool: Some(pool.clone()),
                        token: TokenPolicy {
                            access_token_lifetime: lifetime,
                            immortal: false,
                            refresh: None,
                            allow_url_parameters: false,
                            jwt: true,
                            opaque: false,
                            dpop_bound: false,
                            certificate_bound: false,
                        },
                        secrets,
                        api_keys: Vec::new(),
                        exchange_issuers: Vec::new(),
                        tenant: Some((t.id.clone(), p.id.clone())),
                        browser: Default::default(),
                        certificate_auth: None,
                    },
                });
            }
            built.pools.push(UserPoolConfig {
                name: pool,
                users: users
                    .iter()
                    .map(|u| UserConfig {
                        username: u.email.clone(),
                        password_hash: Secret::new(NO_PASSWORD.into()),
                        roles: u.scopes.clone(),
                        acl: None,
                        email: Some(u.email.clone()),
                        name: None,
                    })
                    .collect(),
            });
            projects.push(ProjectConfig {
                id: p.id,
                clients,
                users,
            });
        }
        built.tenants.push(TenantConfig {
            id: t.id,
            apis: t.apis,
            lifetime,
            oidc_issuers: t.oidc_issuers,
            email_claim,
            projects,
        });
    }
    built
}

fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && s.len() <= 254
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}
