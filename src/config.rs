//! Configuration: YAML file structs (`file`) → validated internal config (this module's
//! types). `load` reports every error at once, each with its file and key path.

mod admin;
mod apis;
mod clients;
mod dpop;
mod duration;
mod errors;
mod file;
mod gateway;
mod identity;
mod issuer;
mod issuers;
mod listen;
mod pool;
mod tenants;
mod upstreams;
mod upstreams_file;

pub use identity::{CredentialMode, IdentityConfig, IdentityHeaders, IdentitySettings};
pub use issuer::{
    IssuerSettings, IssuerSetupError, KeySource, RefreshSettings, http_url, load_ca_file,
};
pub use tenants::pool_name as tenant_pool_name;

pub use admin::{
    AdminKey, AdminScope, AdminSettings, PLACEHOLDER_HASH, ProvisionRefs, RegistrationSettings,
};
pub use apis::is_valid_name;
pub use dpop::{DpopSettings, ReplayScope};
pub use duration::{DurationError, parse_duration};
pub use errors::{ConfigError, ConfigErrors};
pub use file::GrantFile;
pub use listen::{ClientCertMode, ClientCertSupport, Listener, TlsListener};

use crate::domain::jose::Algorithm;
use crate::domain::oauth::{Family, Format, GrantType, PolicyKind};
use crate::domain::scope::Rule;
use crate::domain::secret::Secret;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The validated configuration the gateway runs on.
#[derive(Debug)]
pub struct Config {
    /// Client-facing listeners.
    pub listeners: Vec<Listener>,
    /// Where `/metrics` is served.
    pub metrics_listen: Option<SocketAddr>,
    /// Where front proxies ask for decisions (nginx `auth_request` and the like).
    pub forward_auth_listen: Option<SocketAddr>,
    /// What upstreams receive about the caller.
    pub identity: IdentitySettings,
    /// `iss` of issued tokens, without a trailing slash.
    pub issuer: String,
    /// Generated keys and durable state live here.
    pub state_dir: PathBuf,
    pub server: ServerSettings,
    pub tokens: TokenSettings,
    pub validation_cache: CacheSettings,
    pub client_auth_cache: CacheSettings,
    pub log: LogSettings,
    /// The family whose endpoints the discovery document advertises.
    pub discovery_family: Family,
    /// `discovery.mtls_endpoint_base`: where the mTLS listener is reached, when the issuer
    /// URL is not it (RFC 8705 §5 `mtls_endpoint_aliases`).
    pub mtls_endpoint_base: Option<String>,
    pub store: StoreSettings,
    pub limits: LimitSettings,
    /// How DPoP proofs are checked.
    pub dpop: DpopSettings,
    /// The admin API, when `admin:` is set.
    pub admin: Option<AdminSettings>,
    pub registration: RegistrationSettings,
    pub apis: Vec<ApiConfig>,
    /// Product name → its APIs (provisioned credentials name products too).
    pub products: std::collections::HashMap<String, Vec<String>>,
    pub policies: Vec<PolicyConfig>,
    pub credentials: Vec<CredentialConfig>,
    pub user_pools: Vec<UserPoolConfig>,
    pub issuers: Vec<IssuerConfig>,
    pub tenants: Vec<TenantConfig>,
    /// The upstreams file these came from (reloaded on SIGHUP).
    pub upstreams_file: Option<PathBuf>,
    /// The upstreams file says an empty catalog is meant (`allow_empty: true`).
    pub allow_empty: bool,
}

/// What a configuration's upstreams file declares, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Declared {
    pub apis: usize,
    /// Clients: credentials (tenants' included) and auth policies.
    pub credentials: usize,
}

impl Config {
    pub fn upstreams_file_path(&self) -> Option<&Path> {
        self.upstreams_file.as_deref()
    }

    pub fn declared(&self) -> Declared {
        Declared {
            apis: self.apis.len(),
            credentials: self.credentials.len() + self.policies.len(),
        }
    }

    /// Why running on this configuration instead of one that declared `before` would take
    /// every API or every credential away, unless the file says that is meant: one bad
    /// deploy step (an emptied file, a list cut off) must not turn every route into a 404 or
    /// every client into a 401.
    pub fn empties(&self, before: Declared) -> Option<String> {
        if self.allow_empty {
            return None;
        }
        let now = self.declared();
        let mut lost = Vec::new();
        if before.apis > 0 && now.apis == 0 {
            lost.push(format!(
                "every API ({} running, 0 in the file)",
                before.apis
            ));
        }
        if before.credentials > 0 && now.credentials == 0 {
            lost.push(format!(
                "every credential ({} running, 0 in the file)",
                before.credentials
            ));
        }
        (!lost.is_empty()).then(|| {
            format!(
                "the upstreams file would take away {}; if that is meant, write \
                 `allow_empty: true` in it",
                lost.join(" and ")
            )
        })
    }
}

/// Brute-force limits on failed client and user authentication.
#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    pub window: Duration,
    pub per_account: u32,
    pub per_ip: u32,
    /// argon2 verifications run at once.
    pub hash_concurrency: usize,
    /// Checks that may wait for one; past that the token endpoints shed load (503).
    pub hash_queue: usize,
    /// The share of a core each verification slot may keep busy (its permit rests after
    /// each run so that hashing never takes more).
    pub hash_cpu_share: f64,
}

/// Where durable state lives.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub backend: StoreBackend,
    pub purge_interval: Duration,
    /// The AES-256-GCM key that seals generated signing keys before they are stored.
    pub key_encryption: Option<Secret<[u8; 32]>>,
}

#[derive(Debug, Clone)]
pub enum StoreBackend {
    /// The embedded store: one SQLite file.
    Sqlite { file: PathBuf, sync: StoreSync },
    /// Shared by every node of a cluster.
    Redis(RedisSettings),
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port/db` or `rediss://` for TLS; may hold a password.
    pub url: Secret<String>,
    /// The same URL without its password, for logs.
    pub url_for_logs: String,
    /// Prefix of every key tollgate writes (several gateways may share one Redis).
    pub prefix: String,
    /// Longest wait for any Redis call.
    pub timeout: Duration,
    /// Approximate length the revocation stream is trimmed to.
    pub feed_max_len: u64,
}

pub use file::StoreSync;
pub use upstreams_file::ConsentMode;

/// Deadlines for clients that send slowly (`server.client_header_timeout`,
/// `server.client_body_timeout`, `server.client_body_min_rate`, `server.keepalive_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct SlowClientLimits {
    pub header: Duration,
    pub body: Duration,
    /// Bytes per second that earn a body one more second; 0: the whole body within `body`.
    pub body_min_rate: u64,
    pub keepalive: Duration,
}

/// Pingora process settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub threads: usize,
    pub work_stealing: bool,
    pub pid_file: PathBuf,
    pub upgrade_sock: PathBuf,
    pub upgrade_timeout: Duration,
    pub user: Option<String>,
    pub group: Option<String>,
    pub drain_time: Duration,
    /// Header fields a request may have, and their bytes in all (else 431).
    pub max_request_headers: usize,
    pub max_request_header_bytes: usize,
    /// Deadlines for slow clients (header, body and its minimum rate, keep-alive idle).
    pub slow_clients: SlowClientLimits,
    pub grace_period: Option<Duration>,
    pub graceful_shutdown_timeout: Option<Duration>,
    pub upstream_keepalive_pool_size: usize,
    /// `server.header_case: lowercase`: HTTP/1 headers parsed without their names' case.
    pub lowercase_header_names: bool,
}

#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub signing_key: SigningKeySource,
    pub verification_keys: Vec<KeyFile>,
    pub leeway: Duration,
    pub access_token_lifetime: Duration,
    pub refresh_grace_period: Duration,
    pub rotation: RotationSettings,
    /// How long verifiers may cache JWKS and discovery (`Cache-Control: max-age`).
    pub jwks_max_age: Duration,
    /// How long a browser stays signed in at the login page (the session cookie).
    pub session_lifetime: Duration,
}

/// Signing-key rotation of generated keys (`tollgate keys rotate`, or on a schedule).
#[derive(Debug, Clone, Copy)]
pub struct RotationSettings {
    /// Rotate by itself when the signing key is this old.
    pub every: Option<Duration>,
    /// How long a new key is published in JWKS before it signs anything: at least one JWKS
    /// cache lifetime (`jwks_max_age`), so every verifier has it before the first token it
    /// signs.
    pub publish_ahead: Duration,
}

/// Where the signing key comes from.
#[derive(Debug, Clone)]
pub enum SigningKeySource {
    /// Generated on first start and kept in the state directory.
    Generated {
        algorithm: Algorithm,
        kid: Option<String>,
    },
    /// A PEM file the operator provides.
    File(KeyFile),
}

#[derive(Debug, Clone)]
pub struct KeyFile {
    pub path: PathBuf,
    pub algorithm: Algorithm,
    pub kid: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    pub max_entries: u64,
    pub ttl: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct LogSettings {
    pub level: log::LevelFilter,
    pub access_log: AccessLog,
    /// Request ids: taken from the client when valid, else made; sent upstream and back.
    pub request_id: bool,
    /// Start a `traceparent` for a request that has none.
    pub start_traces: bool,
}

/// The access log's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    /// One line of `key=value` text per request.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// How a client's tokens are made.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    /// `None`: the gateway-wide `tokens.access_token_lifetime`.
    pub access_token_lifetime: Option<Duration>,
    /// Access tokens without `exp`.
    pub immortal: bool,
    /// Refresh tokens are issued, valid this long.
    pub refresh: Option<Duration>,
    /// Token requests may come as GET with a query string.
    pub allow_url_parameters: bool,
    /// Formats the client may get.
    pub jwt: bool,
    pub opaque: bool,
    /// `dpop_bound_access_tokens` (RFC 9449 §5.2): every token request must carry a
    /// DPoP proof.
    pub dpop_bound: bool,
    /// `tls_client_certificate_bound_access_tokens` (RFC 8705 §3): every token request
    /// comes with a client certificate, and its tokens are bound to it.
    pub certificate_bound: bool,
}

impl TokenPolicy {
    pub fn allows(&self, format: Format) -> bool {
        match format {
            Format::Jwt => self.jwt,
            Format::Opaque => self.opaque,
        }
    }
}

/// How an API authenticates requests: any of the accepted ways in (none: forwarded
/// without a credential check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuthMode {
    /// A bearer token: tollgate's own (JWT or opaque) or an external issuer's JWT.
    pub jwt: bool,
    /// An API key of a credential, in the API's key header.
    pub api_key: bool,
}

impl AuthMode {
    pub const NONE: AuthMode = AuthMode {
        jwt: false,
        api_key: false,
    };
    pub const JWT: AuthMode = AuthMode {
        jwt: true,
        api_key: false,
    };

    pub fn is_none(self) -> bool {
        !self.jwt && !self.api_key
    }
}

/// Whose bearer tokens an API accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerRef {
    /// The gateway's own tokens.
    Tollgate,
    /// An external issuer, by name.
    External(String),
}

/// A rate per consumer: `requests` per `per`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
    pub burst: u32,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub name: String,
    pub prefix: String,
    pub host: Option<String>,
    pub strip_prefix: bool,
    pub upstream: UpstreamConfig,
    pub auth: AuthMode,
    /// With `auth.jwt`: the issuers whose tokens it accepts.
    pub issuers: Vec<IssuerRef>,
    /// With `auth.api_key`: the header carrying the key.
    pub api_key_header: http::HeaderName,
    pub audience: String,
    pub rules: Vec<Rule>,
    /// Only DPoP-bound tokens, each with its proof (`dpop: required`).
    pub dpop_required: bool,
    /// Per-operation ways in, one per rule: `None` takes the API's `auth`.
    pub rule_auth: Vec<Option<AuthMode>>,
    /// Per-operation limits, one per rule.
    pub rule_limits: Vec<Option<RateLimit>>,
    pub rate_limit: Option<RateLimit>,
    /// Scopes the API declares.
    pub scopes: Vec<String>,
    /// What its upstream receives about the caller.
    pub identity: IdentityConfig,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub servers: Vec<UpstreamServer>,
    pub tls: Option<UpstreamTls>,
    pub host_header: HostHeader,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub health_check: Option<HealthCheck>,
    pub protocol: UpstreamProtocol,
    /// Further servers tried after a connect failure (at most one per other server).
    pub retries: usize,
}

/// The HTTP version spoken to an API's servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2 over TLS, agreed by ALPN.
    H2,
    /// HTTP/2 without TLS, by prior knowledge (RFC 9113 §3.3).
    H2c,
}

#[derive(Debug, Clone)]
pub struct UpstreamServer {
    pub addr: SocketAddr,
    /// `host:port` as written in the config (used for `host_header: upstream`).
    pub authority: String,
}

#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub sni: String,
    pub verify: bool,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostHeader {
    Pass,
    Upstream,
    Set(String),
}

#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_after: usize,
    pub healthy_after: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheckKind {
    Tcp,
    Http { path: String },
}

/// A client registered with the token service (a policy's key or a credential).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub client_id: String,
    /// argon2 PHC string.
    pub secret_hash: Secret<String>,
    /// May use the password and refresh grants without a secret.
    pub public: bool,
    pub grant_types: Vec<GrantType>,
    /// Scopes of its client_credentials tokens (a policy's scopes, a credential's roles).
    pub scopes: Vec<String>,
    pub user_pool: Option<String>,
    pub token: TokenPolicy,
    /// Further secrets by id (tenant clients rotate them); the first is `secret_hash`.
    pub secrets: Vec<(String, Secret<String>)>,
    /// SHA-256 digests of its API keys, by name.
    pub api_keys: Vec<(String, [u8; 32])>,
    /// External issuers whose tokens it may exchange (RFC 8693).
    pub exchange_issuers: Vec<String>,
    /// The tenant and project of a tenant client.
    pub tenant: Option<(String, String)>,
    /// The authorization code flow.
    pub browser: BrowserClient,
    /// `tls_client_auth` or `self_signed_tls_client_auth` (RFC 8705 §2): it authenticates
    /// with its TLS client certificate, not a secret.
    pub certificate_auth: Option<crate::domain::certificate::CertificateAuth>,
}

/// What the authorization code flow needs of a client.
#[derive(Debug, Clone, Default)]
pub struct BrowserClient {
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub skip_consent: bool,
    /// `token_endpoint_auth_method: none`: it authenticates with its id alone, and only
    /// for the authorization code and refresh grants (PKCE and rotation protect those).
    pub public: bool,
    /// Shown on the login and consent pages.
    pub name: String,
}

/// An external identity provider, with what token exchange needs of it.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub settings: crate::config::IssuerSettings,
    /// The claim that names the user in an exchanging client's pool.
    pub user_claim: Option<crate::domain::claim::ClaimPath>,
}

/// A tenant of `/auth/{user,admin}/{generateToken,oidcToken}` (seed 003).
#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub id: String,
    /// The APIs (names) its tokens are for.
    pub apis: Vec<String>,
    pub lifetime: Option<Duration>,
    pub oidc_issuers: Vec<String>,
    /// The claim of an external token that names the user (default `email`).
    pub email_claim: crate::domain::claim::ClaimPath,
    pub projects: Vec<ProjectConfig>,
}

#[derive(Debug, Clone)]
pub struct ProjectConfig {
    pub id: String,
    /// The client ids of its clients (each is also a credential of the tenant's APIs).
    pub clients: Vec<String>,
    pub users: Vec<TenantUserConfig>,
}

#[derive(Debug, Clone)]
pub struct TenantUserConfig {
    pub email: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    pub resources: Vec<String>,
    pub groups: Vec<String>,
    pub admin: bool,
}

#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub name: String,
    pub kind: PolicyKind,
    pub apis: Vec<String>,
    pub client: ClientConfig,
}

#[derive(Debug, Clone)]
pub struct CredentialConfig {
    /// APIs the credential may call: its `acl` and the APIs of its products.
    pub acl: Vec<String>,
    pub client: ClientConfig,
}

#[derive(Debug, Clone)]
pub struct UserPoolConfig {
    pub name: String,
    pub users: Vec<UserConfig>,
}

#[derive(Debug, Clone)]
pub struct UserConfig {
    pub username: String,
    /// argon2 PHC string.
    pub password_hash: Secret<String>,
    pub roles: Vec<String>,
    /// APIs this user's tokens may open; `None`: all the client's.
    pub acl: Option<Vec<String>>,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// Load and validate the gateway config at `path` and the upstreams file it names.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    gateway::load(path)
}

/// Validate config given as text: `gateway` as the file at `path`, and `upstreams` as the
/// upstreams file it names (whatever that name is). No file is read; paths in either are
/// still resolved against `path`'s directory and checked.
pub fn parse(path: &Path, gateway: &str, upstreams: &str) -> Result<Config, ConfigErrors> {
    gateway::parse(path, gateway, |p, identity| {
        upstreams::parse(p, upstreams, identity)
    })
}

/// Resolve a path from a config file against the directory of that file.
fn resolve_path(base_dir: &Path, value: &str) -> PathBuf {
    let p = Path::new(value);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

#[cfg(test)]
mod tests;
