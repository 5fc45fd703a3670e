//! Who may get tokens and what their tokens may open: the clients of both families, the
//! user pools of the password grant, and the APIs as the token service sees them. The proxy
//! asks [`Registry::permits`] on every request, so removing a credential, policy, user or
//! ACL entry takes effect at once.

use crate::auth::identity::{ClaimPlan, IdentityValues, Who};
mod overlay;

use crate::config::{ClientConfig, Config, CredentialConfig, TenantUserConfig, TokenPolicy};
use crate::domain::claim::ClaimPath;
use crate::domain::ids::ClientId;
use crate::domain::oauth::{Family, GrantType, WayIn};
use crate::domain::secret::Secret;
pub use overlay::{Entry, Overlay};
use std::collections::{HashMap, HashSet};

/// Maps and sets looked up on every protected request (a token's client, the APIs it may
/// call, its user): foldhash rather than std's SipHash, as for the route table. Their keys
/// come from the configuration; a lookup cannot add one.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;
use std::sync::Arc;
use std::time::Duration;

/// A client of the token service: a policy's key (`/auth/*`) or a credential (`/credential/*`).
#[derive(Debug)]
pub struct Client {
    pub id: ClientId,
    pub family: Family,
    pub secret_hash: Secret<String>,
    pub public: bool,
    pub grant_types: Vec<GrantType>,
    /// Scopes of its client_credentials tokens.
    pub scopes: Vec<String>,
    /// The same, as an API key's requests are checked against them.
    pub scope_set: crate::domain::scope::Scopes,
    /// The APIs it may call (names).
    pub apis: FastSet<String>,
    /// Their audiences, in configuration order.
    pub audiences: Vec<String>,
    pub pool: Option<Arc<UserPool>>,
    pub token: TokenPolicy,
    /// Access-token lifetime, the gateway default applied.
    pub lifetime: Duration,
    /// Every secret it may prove, by id (`None`: its only secret, `secret_hash`).
    pub secrets: Vec<(Option<String>, Secret<String>)>,
    /// External issuers whose tokens it may exchange.
    pub exchange_issuers: Vec<String>,
    /// A tenant client: its tenant and project.
    pub tenant: Option<(String, String)>,
    /// The authorization code flow: redirect URIs, origins, consent, public or not.
    pub browser: crate::config::BrowserClient,
    /// It authenticates with its TLS client certificate (RFC 8705 §2), not a secret.
    pub certificate_auth: Option<crate::domain::certificate::CertificateAuth>,
}

impl Client {
    /// `exp` - `iat` of its access tokens; `None` for immortal ones.
    pub fn access_lifetime(&self) -> Option<Duration> {
        (!self.token.immortal).then_some(self.lifetime)
    }
}

#[derive(Debug)]
pub struct UserPool {
    pub name: String,
    pub users: FastMap<String, User>,
}

#[derive(Debug)]
pub struct User {
    pub username: String,
    pub password_hash: Secret<String>,
    pub roles: Vec<String>,
    /// The APIs its tokens may open; `None`: all of the client's.
    pub acl: Option<HashSet<String>>,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// An API as the token service needs it.
#[derive(Debug, Clone)]
pub struct ApiInfo {
    pub name: String,
    pub audience: String,
    pub scopes: Vec<String>,
    /// Its path prefix: the resource a protected-resource document names.
    pub prefix: String,
    /// `dpop: required`.
    pub dpop_required: bool,
}

/// A tenant of the seed-003 endpoints.
#[derive(Debug)]
pub struct Tenant {
    pub id: String,
    /// The audiences of its APIs.
    pub audiences: Vec<String>,
    pub oidc_issuers: Vec<String>,
    pub email_claim: ClaimPath,
    pub projects: HashMap<String, Arc<Project>>,
}

#[derive(Debug)]
pub struct Project {
    pub id: String,
    pub clients: HashSet<String>,
    /// By email, lower-case.
    pub users: HashMap<String, TenantUserConfig>,
}

/// An API key of a credential: whose it is, its name, and what the upstream is told.
#[derive(Debug)]
pub struct ApiKey {
    pub client: Arc<Client>,
    pub name: Arc<str>,
    pub identity: IdentityValues,
}

impl ApiKey {
    fn new(client: Arc<Client>, name: &str) -> Self {
        let identity = IdentityValues::new(
            Who {
                way_in: WayIn::ApiKey,
                subject: Some(&client.id),
                client_id: Some(&client.id),
                scopes: &client.scope_set,
                issuer: None,
                credential: Some(name),
            },
            // An API key carries no claims.
            None,
            &ClaimPlan::none(),
        );
        Self {
            client,
            name: name.into(),
            identity,
        }
    }
}

/// The claim of an external issuer's tokens that names a user of the exchanging
/// client's pool (`None`: `preferred_username`, then `email`).
#[derive(Debug)]
pub struct IssuerUsers {
    pub claim: Option<ClaimPath>,
}

#[derive(Default)]
pub struct Registry {
    auth: FastMap<String, Arc<Client>>,
    /// The files' credentials; the provisioned ones are in `overlay`, consulted after.
    credential: FastMap<String, Arc<Client>>,
    apis: HashMap<String, ApiInfo>,
    /// Audience → API name.
    by_audience: HashMap<String, String>,
    /// SHA-256 of an API key → its credential and the key's name.
    api_keys: HashMap<[u8; 32], Arc<ApiKey>>,
    tenants: HashMap<String, Arc<Tenant>>,
    issuer_users: HashMap<String, IssuerUsers>,
    /// User pools by name (provisioned credentials name them too).
    pools: HashMap<String, Arc<UserPool>>,
    /// Access-token lifetime of clients that set none.
    default_lifetime: Duration,
    overlay: Arc<Overlay>,
}

/// What building a client needs of the registry being built.
struct Builder<'a> {
    apis: &'a HashMap<String, ApiInfo>,
    pools: &'a HashMap<String, Arc<UserPool>>,
    default_lifetime: Duration,
}

impl Builder<'_> {
    fn client(&self, c: &ClientConfig, family: Family, api_names: &[String]) -> Arc<Client> {
        let secrets = if c.secrets.is_empty() {
            vec![(None, c.secret_hash.clone())]
        } else {
            c.secrets
                .iter()
                .map(|(id, h)| (Some(id.clone()), h.clone()))
                .collect()
        };
        let mut audiences: Vec<String> = Vec::new();
        for name in api_names {
            if let Some(api) = self.apis.get(name)
                && !audiences.contains(&api.audience)
            {
                audiences.push(api.audience.clone());
            }
        }
        Arc::new(Client {
            id: ClientId::new(c.client_id.as_str()),
            family,
            secret_hash: c.secret_hash.clone(),
            public: c.public,
            grant_types: c.grant_types.clone(),
            scopes: c.scopes.clone(),
            scope_set: crate::domain::scope::Scopes::from_list(&c.scopes),
            apis: api_names.iter().cloned().collect(),
            audiences,
            pool: c
                .user_pool
                .as_ref()
                .and_then(|p| self.pools.get(p).cloned()),
            token: c.token.clone(),
            lifetime: c
                .token
                .access_token_lifetime
                .unwrap_or(self.default_lifetime),
            secrets,
            exchange_issuers: c.exchange_issuers.clone(),
            tenant: c.tenant.clone(),
            browser: c.browser.clone(),
            certificate_auth: c.certificate_auth.clone(),
        })
    }
}

impl Registry {
    /// The registry of the files alone (operator commands, checks).
    pub fn from_config(config: &Config) -> Self {
        Self::with_overlay(config, Arc::default())
    }

    /// The registry of the files, with the provisioned credentials of `overlay` after them.
    pub fn with_overlay(config: &Config, overlay: Arc<Overlay>) -> Self {
        let apis: HashMap<String, ApiInfo> = config
            .apis
            .iter()
            .map(|a| {
                (
                    a.name.clone(),
                    ApiInfo {
                        name: a.name.clone(),
                        audience: a.audience.clone(),
                        scopes: a.scopes.clone(),
                        prefix: a.prefix.clone(),
                        dpop_required: a.dpop_required,
                    },
                )
            })
            .collect();
        let pools: HashMap<String, Arc<UserPool>> = config
            .user_pools
            .iter()
            .map(|p| {
                let users = p
                    .users
                    .iter()
                    .map(|u| {
                        (
                            u.username.clone(),
                            User {
                                username: u.username.clone(),
                                password_hash: u.password_hash.clone(),
                                roles: u.roles.clone(),
                                acl: u.acl.as_ref().map(|a| a.iter().cloned().collect()),
                                email: u.email.clone(),
                                name: u.name.clone(),
                            },
                        )
                    })
                    .collect();
                (
                    p.name.clone(),
                    Arc::new(UserPool {
                        name: p.name.clone(),
                        users,
                    }),
                )
            })
            .collect();
        let builder = Builder {
            apis: &apis,
            pools: &pools,
            default_lifetime: config.tokens.access_token_lifetime,
        };
        let client = |c: &ClientConfig, family: Family, api_names: &[String]| {
            builder.client(c, family, api_names)
        };
        let credential: FastMap<String, Arc<Client>> = config
            .credentials
            .iter()
            .map(|c| {
                (
                    c.client.client_id.clone(),
                    client(&c.client, Family::Credential, &c.acl),
                )
            })
            .collect();
        let api_keys = config
            .credentials
            .iter()
            .filter_map(|c| credential.get(&c.client.client_id).map(|cl| (c, cl)))
            .flat_map(|(c, cl)| {
                c.client
                    .api_keys
                    .iter()
                    .map(move |(name, d)| (*d, Arc::new(ApiKey::new(cl.clone(), name))))
            })
            .collect();
        let tenants = config
            .tenants
            .iter()
            .map(|t| {
                let audiences = t
                    .apis
                    .iter()
                    .filter_map(|a| apis.get(a).map(|i| i.audience.clone()))
                    .collect();
                let projects = t
                    .projects
                    .iter()
                    .map(|p| {
                        (
                            p.id.clone(),
                            Arc::new(Project {
                                id: p.id.clone(),
                                clients: p.clients.iter().cloned().collect(),
                                users: p
                                    .users
                                    .iter()
                                    .map(|u| (u.email.clone(), u.clone()))
                                    .collect(),
                            }),
                        )
                    })
                    .collect();
                (
                    t.id.clone(),
                    Arc::new(Tenant {
                        id: t.id.clone(),
                        audiences,
                        oidc_issuers: t.oidc_issuers.clone(),
                        email_claim: t.email_claim.clone(),
                        projects,
                    }),
                )
            })
            .collect();
        let issuer_users = config
            .issuers
            .iter()
            .map(|i| {
                (
                    i.settings.name.clone(),
                    IssuerUsers {
                        claim: i.user_claim.clone(),
                    },
                )
            })
            .collect();
        let auth = config
            .policies
            .iter()
            .map(|p| {
                (
                    p.client.client_id.clone(),
                    client(&p.client, Family::Auth, &p.apis),
                )
            })
            .collect();
        Self {
            api_keys,
            tenants,
            issuer_users,
            credential,
            pools,
            default_lifetime: config.tokens.access_token_lifetime,
            overlay,
            auth,
            by_audience: apis
                .values()
                .map(|a| (a.audience.clone(), a.name.clone()))
                .collect(),
            apis,
        }
    }

    pub fn client(&self, family: Family, id: &str) -> Option<Arc<Client>> {
        match family {
            Family::Auth => self.auth.get(id).cloned(),
            Family::Credential => match self.credential.get(id) {
                Some(c) => Some(c.clone()),
                None => self.overlay.client(id),
            },
        }
    }

    /// The client a token was issued to, whichever family it belongs to (ids are unique).
    pub fn any_client(&self, id: &str) -> Option<Arc<Client>> {
        match self.credential.get(id).or_else(|| self.auth.get(id)) {
            Some(c) => Some(c.clone()),
            None => self.overlay.client(id),
        }
    }

    /// Access-token lifetime of clients that set none.
    pub fn default_lifetime(&self) -> Duration {
        self.default_lifetime
    }

    /// The files' client ids: the policies' and the credentials', each sorted.
    pub fn file_clients(&self) -> (Vec<String>, Vec<String>) {
        let mut auth: Vec<String> = self.auth.keys().cloned().collect();
        let mut credential: Vec<String> = self.credential.keys().cloned().collect();
        auth.sort();
        credential.sort();
        (auth, credential)
    }

    /// Whether the files define a client with this id.
    pub fn is_file_client(&self, id: &str) -> bool {
        self.credential.contains_key(id) || self.auth.contains_key(id)
    }

    /// The credentials provisioned at run time.
    pub fn overlay(&self) -> &Arc<Overlay> {
        &self.overlay
    }

    /// A provisioned credential as this registry would serve it.
    pub fn provisioned(&self, c: &CredentialConfig) -> Entry {
        let builder = Builder {
            apis: &self.apis,
            pools: &self.pools,
            default_lifetime: self.default_lifetime,
        };
        let client = builder.client(&c.client, Family::Credential, &c.acl);
        let keys = c
            .client
            .api_keys
            .iter()
            .map(|(name, d)| (*d, Arc::new(ApiKey::new(client.clone(), name))))
            .collect();
        Entry { client, keys }
    }

    pub fn api(&self, name: &str) -> Option<&ApiInfo> {
        self.apis.get(name)
    }

    /// The credential an API key (its SHA-256) belongs to, and the key's name (the caller
    /// keeps it for the request).
    pub fn api_key(&self, digest: &[u8; 32]) -> Option<Arc<ApiKey>> {
        match self.api_keys.get(digest) {
            Some(k) => Some(k.clone()),
            None => self.overlay.api_key(digest),
        }
    }

    pub fn tenant(&self, id: &str) -> Option<&Arc<Tenant>> {
        self.tenants.get(id)
    }

    /// Which claim of an external issuer's tokens names a user.
    pub fn issuer_users(&self, issuer: &str) -> Option<&IssuerUsers> {
        self.issuer_users.get(issuer)
    }

    /// Whether a token of `client_id` (for `username`, if a user's) may still call `api`
    /// under the current configuration.
    pub fn permits(&self, client_id: Option<&str>, username: Option<&str>, api: &str) -> bool {
        let Some(id) = client_id else {
            return false;
        };
        // On every request: the files' client by reference, no reference count touched.
        match self.credential.get(id).or_else(|| self.auth.get(id)) {
            Some(c) => Self::client_permits(c, username, api),
            None => self
                .overlay
                .client(id)
                .is_some_and(|c| Self::client_permits(&c, username, api)),
        }
    }

    fn client_permits(client: &Client, username: Option<&str>, api: &str) -> bool {
        if !client.apis.contains(api) {
            return false;
        }
        match username {
            None => true,
            Some(name) => client
                .pool
                .as_ref()
                .and_then(|p| p.users.get(name))
                .is_some_and(|u| u.acl.as_ref().is_none_or(|acl| acl.contains(api))),
        }
    }

    /// The audiences among `audiences` a token of this holder may still use.
    pub fn permitted_audiences(
        &self,
        client_id: &str,
        username: Option<&str>,
        audiences: &[String],
    ) -> Vec<String> {
        audiences
            .iter()
            .filter(|aud| {
                self.by_audience
                    .get(*aud)
                    .is_some_and(|api| self.permits(Some(client_id), username, api))
            })
            .cloned()
            .collect()
    }

    /// Every scope any client, user or API names (for the discovery document).
    pub fn all_scopes(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .auth
            .values()
            .chain(self.credential.values())
            .flat_map(|c| {
                c.scopes.iter().cloned().chain(
                    c.pool
                        .iter()
                        .flat_map(|p| p.users.values().flat_map(|u| u.roles.iter().cloned())),
                )
            })
            .chain(self.apis.values().flat_map(|a| a.scopes.iter().cloned()))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The longest lifetime of any access token a client may be issued; `None` when some
    /// client's tokens never expire. A replaced signing key stays published this long.
    pub fn longest_token_lifetime(&self) -> Option<Duration> {
        self.auth
            .values()
            .chain(self.credential.values())
            .map(|c| c.access_lifetime())
            .try_fold(Duration::ZERO, |longest, l| l.map(|l| longest.max(l)))
    }

    /// Every origin some client allows (a CORS preflight names no client).
    pub fn any_client_allows_origin(&self, origin: &str) -> bool {
        let allows = |c: &Client| c.browser.allowed_origins.iter().any(|o| o == origin);
        self.auth
            .values()
            .chain(self.credential.values())
            .any(|c| allows(c))
            || self.overlay.any(allows)
    }

    /// Whether some client is public (`token_endpoint_auth_method: none`).
    pub fn has_public_clients(&self) -> bool {
        self.auth
            .values()
            .chain(self.credential.values())
            .any(|c| c.browser.public)
    }

    /// The grant types some client may use.
    pub fn grant_types(&self) -> Vec<GrantType> {
        GrantType::ALL
            .into_iter()
            .filter(|g| {
                self.auth
                    .values()
                    .chain(self.credential.values())
                    .any(|c| c.grant_types.contains(g))
            })
            .collect()
    }
}
