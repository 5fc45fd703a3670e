//! The admin API (`admin:` of the gateway file), dynamic client registration
//! (`registration:`), and the checks a credential provisioned at run time passes: the same
//! as a credential of the upstreams file, against the running configuration.

use super::clients::{NAME_RULE, Refs, credential, parse_sha256};
use super::errors::{ConfigError, Errors, Lenient};
use super::file::{AdminFile, GrantFile, RegistrationFile};
use super::upstreams_file::CredentialFile;
use super::{AuthMode, Config, CredentialConfig, TlsListener};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What an admin key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminScope {
    /// Every read: credentials, subscriptions, the catalog.
    Read,
    CredentialsWrite,
    SubscriptionsWrite,
    /// Issue initial access tokens for dynamic client registration.
    RegistrationWrite,
}

impl AdminScope {
    pub const ALL: [AdminScope; 4] = [
        AdminScope::Read,
        AdminScope::CredentialsWrite,
        AdminScope::SubscriptionsWrite,
        AdminScope::RegistrationWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AdminScope::Read => "read",
            AdminScope::CredentialsWrite => "credentials:write",
            AdminScope::SubscriptionsWrite => "subscriptions:write",
            AdminScope::RegistrationWrite => "registration:write",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AdminKey {
    pub name: String,
    pub digest: [u8; 32],
    pub scopes: Vec<AdminScope>,
}

/// The admin API's listener and keys.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub tls: Option<TlsListener>,
    pub keys: Vec<AdminKey>,
    pub audit_log: PathBuf,
}

/// Dynamic client registration (RFC 7591, RFC 7592).
#[derive(Debug, Clone, Default)]
pub struct RegistrationSettings {
    pub enabled: bool,
    pub open: Option<GrantFile>,
}

pub(super) fn admin(
    f: AdminFile,
    listen: Option<SocketAddr>,
    tls: Option<TlsListener>,
    state_dir: &Path,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<AdminSettings> {
    if f.keys.is_empty() {
        errs.push(
            "admin.keys",
            "name at least one key (`tollgate admin key` makes one)",
        );
    }
    let mut names = HashSet::new();
    let mut digests = HashSet::new();
    let mut keys = Vec::new();
    for (i, k) in f.keys.into_iter().enumerate() {
        let path = format!("admin.keys[{i}]");
        if !super::apis::is_valid_name(&k.name) {
            errs.push(format!("{path}.name"), NAME_RULE);
        } else if !names.insert(k.name.clone()) {
            errs.push(
                format!("{path}.name"),
                format!("key `{}` is listed twice", k.name),
            );
        }
        let digest = parse_sha256(&k.sha256);
        match digest {
            None => errs.push(
                format!("{path}.sha256"),
                "64 hex digits: the SHA-256 `tollgate admin key` prints",
            ),
            Some(d) if !digests.insert(d) => {
                errs.push(format!("{path}.sha256"), "the digest of another key")
            }
            Some(_) => {}
        }
        if k.scopes.is_empty() {
            errs.push(format!("{path}.scopes"), "name at least one scope");
        }
        let mut scopes = Vec::new();
        for (j, s) in k.scopes.iter().enumerate() {
            match AdminScope::ALL.into_iter().find(|a| a.as_str() == s) {
                Some(a) => scopes.push(a),
                None => errs.push(
                    format!("{path}.scopes[{j}]"),
                    format!(
                        "`{s}` is not an admin scope (read, credentials:write, subscriptions:write, registration:write)"
                    ),
                ),
            }
        }
        if let Some(digest) = digest {
            keys.push(AdminKey {
                name: k.name,
                digest,
                scopes,
            });
        }
    }
    let audit_log = match f.audit_log.as_deref().map(str::trim) {
        Some("") => {
            errs.push("admin.audit_log", "must not be empty");
            PathBuf::new()
        }
        Some(p) => super::resolve_path(base_dir, p),
        None => state_dir.join("admin-audit.log"),
    };
    Some(AdminSettings {
        listen: listen?,
        tls,
        keys,
        audit_log,
    })
}

pub(super) fn registration(f: RegistrationFile) -> RegistrationSettings {
    RegistrationSettings {
        enabled: f.enabled.unwrap_or(false),
        open: f.open,
    }
}

/// What a credential provisioned at run time may refer to: the running configuration's
/// APIs, products, user pools and issuers; and the client ids its files use, which a
/// provisioned credential may never take.
#[derive(Debug, Clone, Default)]
pub struct ProvisionRefs {
    apis: Vec<(String, AuthMode)>,
    products: HashMap<String, Vec<String>>,
    pools: HashSet<String>,
    issuers: HashSet<String>,
    file_clients: HashSet<String>,
    base_dir: PathBuf,
}

impl ProvisionRefs {
    pub fn of(config: &Config) -> Self {
        let apis = config
            .apis
            .iter()
            .map(|a| {
                let any = a.rule_auth.iter().flatten().fold(a.auth, |m, r| AuthMode {
                    jwt: m.jwt || r.jwt,
                    api_key: m.api_key || r.api_key,
                });
                (a.name.clone(), any)
            })
            .collect();
        let file_clients = config
            .credentials
            .iter()
            .map(|c| c.client.client_id.clone())
            .chain(config.policies.iter().map(|p| p.client.client_id.clone()))
            .collect();
        Self {
            apis,
            products: config.products.clone(),
            pools: config.user_pools.iter().map(|p| p.name.clone()).collect(),
            issuers: config
                .issuers
                .iter()
                .map(|i| i.settings.name.clone())
                .collect(),
            file_clients,
            base_dir: config
                .upstreams_file
                .as_deref()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        }
    }

    /// Every product and its APIs, by name.
    pub fn products(&self) -> Vec<(&String, &Vec<String>)> {
        let mut all: Vec<_> = self.products.iter().collect();
        all.sort();
        all
    }

    /// The APIs of a product.
    pub fn product(&self, name: &str) -> Option<&[String]> {
        self.products.get(name).map(Vec::as_slice)
    }

    /// Whether the files define a client with this id.
    pub fn is_file_client(&self, id: &str) -> bool {
        self.file_clients.contains(id)
    }

    /// Check `doc` as the upstreams file's credential entries are checked; errors name
    /// their key path under `path` in `source` (e.g. "request body").
    pub fn check_credential(
        &self,
        doc: &serde_json::Value,
        source: &str,
        path: &str,
    ) -> Result<CredentialConfig, Vec<ConfigError>> {
        let mut errs = Errors::new(source);
        let value = match serde_yaml::to_value(doc) {
            Ok(v) => v,
            Err(e) => {
                errs.push(path, format!("cannot be read: {e}"));
                return Err(errs.into_vec());
            }
        };
        let parsed = match Lenient::<CredentialFile>::deserialize(value) {
            Ok(l) => l.take(path, &mut errs),
            Err(e) => {
                errs.push(path, e);
                None
            }
        };
        let Some(file) = parsed else {
            return Err(errs.into_vec());
        };
        let refs = Refs {
            apis: &self.apis,
            products: &self.products,
            pools: &self.pools,
            issuers: &self.issuers,
            base_dir: &self.base_dir,
        };
        let id_path = super::errors::join(path, "client_id");
        if self.file_clients.contains(&file.client_id) {
            errs.push(
                &id_path,
                format!(
                    "client_id `{}` is defined in the upstreams file (file entries are read-only here)",
                    file.client_id
                ),
            );
        }
        let checked = credential(file, path, &refs, &mut HashSet::new(), &mut errs);
        if errs.is_empty() {
            Ok(checked)
        } else {
            // At the top of a document the entry's own path is empty.
            let mut list = errs.into_vec();
            for e in &mut list {
                if let Some(rest) = e.path.strip_prefix('.') {
                    e.path = rest.to_string();
                }
            }
            Err(list)
        }
    }
}

/// A well-formed argon2id PHC string no secret is checked against (the shape check of a
/// template that has no secret of its own).
pub const PLACEHOLDER_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// `registration.open` checked as a credential would be with it.
pub(super) fn check_open_grant(
    refs: &ProvisionRefs,
    grant: &GrantFile,
    file: &str,
) -> Vec<ConfigError> {
    let doc = serde_json::json!({
        "client_id": "registration-check",
        "client_secret_hash": PLACEHOLDER_HASH,
        "acl": grant.acl,
        "products": grant.products,
        "roles": grant.roles,
        "user_pool": grant.user_pool,
    });
    refs.check_credential(&doc, file, "registration.open")
        .err()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::ConfigErrors;
    use super::super::tests::has;
    use super::*;

    const KEY: &str = "ac5bb3526d3be432ba19fb1fc0712d350c160bd2169cd24401c9fcaeaac2d860";

    const UPSTREAMS: &str = "apis:\n  - { name: orders, prefix: /orders, upstream: { servers: [\"127.0.0.1:1\"] }, auth: jwt }\nproducts:\n  - { name: all, apis: [orders] }\nuser_pools:\n  - { name: staff, users: [] }\n";

    fn load_pair(gateway: &str) -> (tempfile::TempDir, Result<Config, ConfigErrors>) {
        super::super::tests::load_pair(gateway, UPSTREAMS)
    }

    fn errors(gateway: &str) -> Vec<(String, String)> {
        super::super::tests::errors(gateway, UPSTREAMS)
    }

    #[test]
    fn the_admin_section_is_read_with_its_defaults() {
        let (dir, r) = load_pair(&format!(
            "upstreams_file: apis.yaml\nstate_dir: st\nadmin:\n  listen: 127.0.0.1:9191\n  keys:\n    - {{ name: ops, sha256: {KEY}, scopes: [read, credentials:write] }}\nregistration:\n  enabled: true\n  open: {{ acl: [orders], roles: [orders:read] }}\n"
        ));
        let c = r.unwrap();
        let a = c.admin.unwrap();
        assert_eq!(a.listen.to_string(), "127.0.0.1:9191");
        assert_eq!(a.audit_log, dir.path().join("st/admin-audit.log"));
        assert_eq!(
            a.keys[0].scopes,
            [AdminScope::Read, AdminScope::CredentialsWrite]
        );
        assert!(c.registration.enabled);
        assert_eq!(c.registration.open.unwrap().acl, ["orders"]);
    }

    #[test]
    fn admin_errors_name_their_key_path() {
        let errs = errors(&format!(
            "listen: [{{ addr: 127.0.0.1:8080 }}]\nupstreams_file: apis.yaml\nadmin:\n  listen: 127.0.0.1:8080\n  keys:\n    - {{ name: ops, sha256: abc, scopes: [] }}\n    - {{ name: ops, sha256: {KEY}, scopes: [write-everything] }}\n    - {{ name: other, sha256: {KEY}, scopes: [read] }}\n  audit_log: \"\"\n"
        ));
        assert!(has(&errs, "admin.listen", "another listener"), "{errs:?}");
        assert!(
            has(&errs, "admin.keys[0].sha256", "64 hex digits"),
            "{errs:?}"
        );
        assert!(
            has(&errs, "admin.keys[0].scopes", "at least one"),
            "{errs:?}"
        );
        assert!(has(&errs, "admin.keys[1].name", "listed twice"), "{errs:?}");
        assert!(
            has(&errs, "admin.keys[1].scopes[0]", "not an admin scope"),
            "{errs:?}"
        );
        assert!(
            has(&errs, "admin.keys[2].sha256", "another key"),
            "{errs:?}"
        );
        assert!(has(&errs, "admin.audit_log", "empty"), "{errs:?}");
        let errs = errors("upstreams_file: apis.yaml\nadmin: { listen: 127.0.0.1:9191 }\n");
        assert!(has(&errs, "admin.keys", "at least one key"), "{errs:?}");
    }

    #[test]
    fn open_registration_is_checked_against_the_upstreams_file() {
        let errs = errors(
            "upstreams_file: apis.yaml\nregistration:\n  enabled: true\n  open: { acl: [nope], products: [none], roles: [\"bad scope\"], user_pool: ghosts }\n",
        );
        for (path, what) in [
            ("registration.open.acl[0]", "no API"),
            ("registration.open.products[0]", "no product"),
            ("registration.open.roles[0]", "not a valid scope"),
            ("registration.open.user_pool", "no user pool"),
        ] {
            assert!(has(&errs, path, what), "{path}: {errs:?}");
        }
    }

    #[test]
    fn a_provisioned_credential_is_checked_like_a_file_one() {
        let (_d, r) = load_pair("upstreams_file: apis.yaml\n");
        let refs = ProvisionRefs::of(&r.unwrap());
        let ok = refs
            .check_credential(
                &serde_json::json!({ "client_id": "p", "client_secret_hash": PLACEHOLDER_HASH, "products": ["all"], "roles": ["orders:read"] }),
                "request body",
                "",
            )
            .unwrap();
        assert_eq!(ok.acl, ["orders"], "the product's APIs");
        let errs = refs
            .check_credential(
                &serde_json::json!({ "client_id": "p", "acl": ["nope"], "roles": [1], "surprise": true }),
                "request body",
                "",
            )
            .unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        for want in ["acl[0]", "roles[0]", "surprise", "client_secret_hash"] {
            assert!(paths.contains(&want), "{want}: {errs:?}");
        }
        assert!(errs.iter().all(|e| e.file == "request body"));
    }
}
