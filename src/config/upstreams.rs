//! The upstreams file as a whole: APIs, products, user pools, auth policies and credentials,
//! and the references between them.

use super::apis::{api, check_api_uniqueness};
use super::clients::{Refs, credential, policy, products, user_pools};
use super::errors::{ConfigError, Errors, Lenient, parse_yaml};
use super::identity::IdentitySettings;
use super::upstreams_file::UpstreamsFile;
use super::{
    ApiConfig, AuthMode, CredentialConfig, IssuerConfig, PolicyConfig, TenantConfig, UserPoolConfig,
};
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Default)]
pub(super) struct Catalog {
    pub apis: Vec<ApiConfig>,
    pub policies: Vec<PolicyConfig>,
    pub credentials: Vec<CredentialConfig>,
    pub user_pools: Vec<UserPoolConfig>,
    pub issuers: Vec<IssuerConfig>,
    pub tenants: Vec<TenantConfig>,
    pub products: std::collections::HashMap<String, Vec<String>>,
    pub allow_empty: bool,
}

pub(super) fn load(path: &Path, identity: &IdentitySettings) -> Result<Catalog, Vec<ConfigError>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text, identity),
        Err(e) => {
            let mut errs = Errors::new(path.display().to_string());
            errs.push("", format!("cannot read the upstreams file: {e}"));
            Err(errs.into_vec())
        }
    }
}

/// Validate the text of the upstreams file at `path` (relative paths in it are resolved
/// against its directory); its APIs' `identity:` goes over the gateway's.
pub(super) fn parse(
    path: &Path,
    text: &str,
    identity: &IdentitySettings,
) -> Result<Catalog, Vec<ConfigError>> {
    let mut errs = Errors::new(path.display().to_string());
    let Some(file) = parse_yaml::<UpstreamsFile>(text, &mut errs) else {
        return Err(errs.into_vec());
    };
    for key in file.unknown.keys() {
        errs.push(
            key,
            "unknown key (expected one of apis, products, user_pools, policies, credentials, issuers, tenants, allow_empty)",
        );
    }
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let allow_empty = file
        .allow_empty
        .and_then(|a| a.take("allow_empty", &mut errs))
        .unwrap_or(false);
    let declares_nothing = [
        file.apis.is_none(),
        file.policies.is_none(),
        file.credentials.is_none(),
        file.products.is_none(),
        file.user_pools.is_none(),
        file.issuers.is_none(),
        file.tenants.is_none(),
    ]
    .iter()
    .all(|absent| *absent);
    if declares_nothing && !allow_empty {
        errs.push(
            "",
            "the file declares nothing (no apis, credentials, policies, tenants or issuers): \
             every request would be refused. A file emptied or cut short by a deploy step looks \
             like this; if it is meant, write `allow_empty: true` in it",
        );
    }
    let issuers_parsed = list(file.issuers, "issuers", &mut errs);
    let issuer_names: HashSet<String> =
        issuers_parsed.iter().map(|(_, i)| i.name.clone()).collect();
    let parsed = list(file.apis, "apis", &mut errs);
    // References are checked against every API the file declares, valid or not, so an
    // error in an API is reported once, at the API.
    let declared: Vec<(String, AuthMode)> = parsed
        .iter()
        .map(|(_, a)| {
            let mut scratch = Errors::new("");
            (a.name.clone(), super::apis::any_auth(a, &mut scratch))
        })
        .collect();
    let apis = parsed
        .into_iter()
        .filter_map(|(path, a)| {
            api(
                a,
                &path,
                base_dir,
                &issuer_names,
                &identity.defaults,
                &mut errs,
            )
        })
        .collect::<Vec<_>>();
    check_api_uniqueness(&apis, &mut errs);

    let products = products(
        list(file.products, "products", &mut errs),
        &declared,
        &mut errs,
    );
    let pools_parsed = list(file.user_pools, "user_pools", &mut errs);
    let pool_names: HashSet<String> = pools_parsed.iter().map(|(_, p)| p.name.clone()).collect();
    let mut user_pools = user_pools(pools_parsed, &declared, &mut errs);
    let refs = Refs {
        apis: &declared,
        products: &products,
        pools: &pool_names,
        issuers: &issuer_names,
        base_dir,
    };
    let issuers = super::issuers::issuers(issuers_parsed, base_dir, &mut errs);

    let mut client_ids = HashSet::new();
    let mut policy_names = HashSet::new();
    let policies = list(file.policies, "policies", &mut errs)
        .into_iter()
        .map(|(path, p)| {
            if !policy_names.insert(p.name.clone()) {
                errs.push(
                    format!("{path}.name"),
                    format!("policy `{}` is defined twice", p.name),
                );
            }
            policy(p, &path, &refs, &mut client_ids, &mut errs)
        })
        .collect();
    let mut credentials: Vec<CredentialConfig> = list(file.credentials, "credentials", &mut errs)
        .into_iter()
        .map(|(path, c)| credential(c, &path, &refs, &mut client_ids, &mut errs))
        .collect();
    // An API key names exactly one credential.
    let mut digests = HashSet::new();
    for (i, c) in credentials.iter().enumerate() {
        for (name, d) in &c.client.api_keys {
            if !digests.insert(*d) {
                errs.push(
                    format!("credentials[{i}].api_keys"),
                    format!("key `{name}` has the digest of another key"),
                );
            }
        }
    }
    let tenants = super::tenants::tenants(
        list(file.tenants, "tenants", &mut errs),
        &refs,
        &mut client_ids,
        &mut errs,
    );
    credentials.extend(tenants.credentials);
    user_pools.extend(tenants.pools);
    if errs.is_empty() {
        Ok(Catalog {
            apis,
            policies,
            credentials,
            user_pools,
            issuers,
            tenants: tenants.tenants,
            products,
            allow_empty,
        })
    } else {
        Err(errs.into_vec())
    }
}

/// The parsed items of a list section, each with its key path.
fn list<T>(
    section: Option<Lenient<Vec<Lenient<T>>>>,
    key: &str,
    errs: &mut Errors,
) -> Vec<(String, T)> {
    section
        .and_then(|s| s.take(key, errs))
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let path = format!("{key}[{i}]");
            item.take(&path, errs).map(|v| (path, v))
        })
        .collect()
}
