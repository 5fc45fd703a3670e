//! The file format of `tollgate.yaml` (the gateway) as users write it, and the pieces both
//! files share (durations as written). Plain serde structs; meaning is given by
//! validation (`gateway`). The upstreams file's format is `upstreams_file`.

use super::Family;
use super::errors::{DefaultKind, KindName, Lenient};
use crate::domain::jose::Algorithm;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A duration as written (`15m`); numbers are kept so validation can say they need a unit.
#[derive(Debug, Clone)]
pub(crate) struct DurationText(String);

impl DurationText {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Int(i64),
            Float(f64),
        }
        Ok(DurationText(match Repr::deserialize(d)? {
            Repr::Text(t) => t,
            Repr::Int(i) => i.to_string(),
            Repr::Float(f) => f.to_string(),
        }))
    }
}

/// Top level of the gateway config file. Every section is parsed on its own so one
/// mistake does not hide the others; unknown top-level keys are collected in `unknown`.
#[derive(Debug, Deserialize)]
pub(crate) struct GatewayFile {
    /// Client-facing listeners.
    pub listen: Option<Lenient<Vec<Lenient<ListenFile>>>>,
    /// The Prometheus listener.
    pub metrics: Option<Lenient<MetricsFile>>,
    /// The `iss` of issued tokens and the base URL of the discovery document.
    pub issuer: Option<Lenient<String>>,
    /// Path of the upstreams file (APIs, policies, credentials), relative to this file.
    pub upstreams_file: Option<Lenient<String>>,
    /// Directory for generated keys and durable state, relative to this file.
    pub state_dir: Option<Lenient<String>>,
    /// Pingora process settings.
    pub server: Option<Lenient<ServerFile>>,
    /// Token signing and validation.
    pub tokens: Option<Lenient<TokensFile>>,
    /// The cache of validated access tokens.
    pub validation_cache: Option<Lenient<CacheFile>>,
    /// The cache of successful client-secret verifications.
    pub client_auth_cache: Option<Lenient<CacheFile>>,
    /// Logging.
    pub log: Option<Lenient<LogFile>>,
    /// The RFC 8414 discovery document.
    pub discovery: Option<Lenient<DiscoveryFile>>,
    /// Durable state: refresh and opaque tokens, revocations, generated keys.
    pub store: Option<Lenient<StoreFile, DefaultKind<Sqlite>>>,
    /// Brute-force limits on client secrets and user passwords.
    pub limits: Option<Lenient<LimitsFile>>,
    /// What the upstream receives about the caller (each API may override it).
    pub identity: Option<Lenient<GatewayIdentityFile>>,
    /// The decision endpoint for front proxies (nginx `auth_request`, Traefik, Envoy,
    /// Caddy).
    pub forward_auth: Option<Lenient<ForwardAuthFile>>,
    /// Sender-constrained tokens with DPoP proofs (RFC 9449).
    pub dpop: Option<Lenient<DpopFile>>,
    /// The admin API: its listener, keys and audit log.
    pub admin: Option<Lenient<AdminFile>>,
    /// Dynamic client registration (RFC 7591).
    pub registration: Option<Lenient<RegistrationFile>>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListenFile {
    /// `ip:port` to listen on.
    pub addr: String,
    /// Serve TLS on this listener.
    pub tls: Option<TlsListenFile>,
    /// A plain listener also takes HTTP/2 with prior knowledge (h2c).
    pub h2c: Option<bool>,
    /// Client connections open at once on this listener (default 10,000); one more is
    /// closed at once.
    pub max_connections: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsListenFile {
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
    /// Offer HTTP/2 by ALPN (default true).
    pub http2: Option<bool>,
    /// Ask clients for a certificate (RFC 8705): `off` (default), `request`, `require`.
    pub client_certificates: Option<ClientCertificatesFile>,
    /// PEM CA certificates that `tls_client_auth` clients' certificates chain to.
    pub client_ca: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ClientCertificatesFile {
    Off,
    Request,
    Require,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsFile {
    /// `ip:port` of the metrics listener (without the section: `127.0.0.1:9090`).
    pub listen: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerFile {
    /// Worker threads of the proxy service.
    pub threads: Option<usize>,
    /// Let idle worker threads steal work from busy ones.
    pub work_stealing: Option<bool>,
    /// PID file, written once the process serves on every listener.
    pub pid_file: Option<String>,
    /// Unix socket over which listeners are handed to a new process on graceful upgrade.
    pub upgrade_sock: Option<String>,
    /// How long an upgrade may take: the old process waits this long for a new one to take
    /// its sockets and report serving (else it keeps serving), and the new one for the old.
    pub upgrade_timeout: Option<DurationText>,
    /// User to switch to at start, before anything is created (needs starting as root).
    pub user: Option<String>,
    /// Group to switch to at start (needs starting as root).
    pub group: Option<String>,
    /// How long a stopping process (graceful upgrade or SIGTERM) goes on accepting, each
    /// answer with `Connection: close`, so that clients move their keep-alive connections
    /// before it stops accepting and closes the idle ones.
    pub drain_time: Option<DurationText>,
    /// Header fields a request may carry (default 100); more answers 431.
    pub max_request_headers: Option<usize>,
    /// Bytes a request's header fields may take in all (default 60 KiB); more answers 431.
    pub max_request_header_bytes: Option<usize>,
    /// The whole request header must arrive within this (default 20s), from accept for a
    /// connection's first request, from its first byte for later ones; else it is closed.
    pub client_header_timeout: Option<DurationText>,
    /// A request body has this long from the end of its header (default 20s), plus one
    /// second for every `client_body_min_rate` bytes received; else it is closed.
    pub client_body_timeout: Option<DurationText>,
    /// Bytes per second a slow body must keep up (default 500; 0: the whole body within
    /// `client_body_timeout`).
    pub client_body_min_rate: Option<u64>,
    /// How long a keep-alive connection may wait for its next request (default 75s).
    pub keepalive_timeout: Option<DurationText>,
    /// How long in-flight requests have to finish once the process stops accepting.
    pub grace_period: Option<DurationText>,
    /// Hard limit for in-flight requests to finish once the grace period ends.
    pub graceful_shutdown_timeout: Option<DurationText>,
    /// Idle upstream connections kept for reuse.
    pub upstream_keepalive_pool_size: Option<usize>,
    /// Whether HTTP/1 header names keep their case (`preserve`, the default) or not.
    pub header_case: Option<HeaderCaseFile>,
}

/// `server.header_case`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HeaderCaseFile {
    Preserve,
    Lowercase,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokensFile {
    /// The key that signs issued JWTs.
    pub signing_key: Option<Lenient<SigningKeyFile>>,
    /// Further keys whose tokens are still accepted and which JWKS publishes (rotation).
    #[serde(default)]
    pub verification_keys: Vec<KeyFileRef>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway: Option<DurationText>,
    /// Access-token lifetime where a policy or credential does not set one.
    pub access_token_lifetime: Option<DurationText>,
    /// How long a used refresh token may be used again (concurrent refreshes) before a
    /// reuse counts as theft.
    pub refresh_grace_period: Option<DurationText>,
    /// Rotation of the generated signing key.
    pub rotation: Option<RotationFile>,
    /// How long verifiers may cache JWKS and the discovery document (default 5m).
    pub jwks_max_age: Option<DurationText>,
    /// How long a browser stays signed in at tollgate's login page (default 8h).
    pub session_lifetime: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotationFile {
    /// Rotate the generated signing key when it is this old (off when left out).
    pub every: Option<DurationText>,
    /// How long a new key is in JWKS before it signs (default twice `jwks_max_age`; at
    /// least `jwks_max_age`).
    pub publish_ahead: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SigningKeyFile {
    /// `ES256` (default), `RS256` or `EdDSA`.
    pub algorithm: Option<Algorithm>,
    /// PEM private key; without it a key is generated once and kept in `state_dir`.
    pub file: Option<String>,
    /// Key id; defaults to the RFC 7638 thumbprint of the public key.
    pub kid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyFileRef {
    /// PEM private or public key.
    pub file: String,
    /// `ES256`, `RS256` or `EdDSA`.
    pub algorithm: Algorithm,
    /// Key id; defaults to the RFC 7638 thumbprint.
    pub kid: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheFile {
    /// Upper bound on cached entries.
    pub max_entries: Option<u64>,
    /// Upper bound on how long an entry lives.
    pub ttl: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogFile {
    /// `error`, `warn`, `info` (default), `debug` or `trace`.
    pub level: Option<String>,
    /// One line per request: `text` (default, also `true`), `json`, or `off` (`false`).
    pub access_log: Option<AccessLogFile>,
    /// Take a valid `X-Request-Id` from the client or make one, send it upstream and
    /// back (default true).
    pub request_id: Option<bool>,
    /// Start a W3C `traceparent` for requests that come without one (default false; one
    /// that comes is always passed on).
    pub start_traces: Option<bool>,
}

/// `store:`, by its `kind`: the embedded SQLite file (the default when `kind` is left
/// out) or a Redis shared by a cluster. Each kind takes only its own keys.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum StoreFile {
    Sqlite(SqliteStoreFile),
    Redis(RedisStoreFile),
}

impl Default for StoreFile {
    fn default() -> Self {
        StoreFile::Sqlite(SqliteStoreFile::default())
    }
}

/// `kind: sqlite` when the store section names no kind.
#[derive(Debug)]
pub(crate) struct Sqlite;

impl KindName for Sqlite {
    const KIND: &'static str = "sqlite";
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqliteStoreFile {
    /// Database file, relative to `state_dir` (default `tollgate.db`).
    pub file: Option<String>,
    /// `full` (default): each acknowledged write is on disk; `normal`: it survives a crash
    /// of the gateway but not of the machine.
    pub sync: Option<StoreSync>,
    /// How often expired tokens and revocations are deleted.
    pub purge_interval: Option<DurationText>,
    /// File holding the 32-byte key (raw, or base64 on one line) that encrypts generated
    /// signing keys in the store.
    pub encryption_key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisStoreFile {
    /// `redis://[user:password@]host:port/db`, or `rediss://` for TLS. Durability is set
    /// in Redis itself (`appendonly`, `appendfsync`).
    pub url: String,
    /// Prefix of every key (default `tollgate:`).
    pub key_prefix: Option<String>,
    /// Longest wait for any call (default 500ms).
    pub timeout: Option<DurationText>,
    /// How often expired tokens and revocations are deleted.
    pub purge_interval: Option<DurationText>,
    /// As for SQLite; required with a generated signing key (private keys are never
    /// stored in clear in a shared store).
    pub encryption_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsFile {
    /// The window failures are counted over.
    pub failed_auth_window: Option<DurationText>,
    /// Failed attempts one client id, or one user, may make per window.
    pub failed_auth_per_account: Option<u32>,
    /// Failed attempts one client address may make per window, whatever the account.
    pub failed_auth_per_ip: Option<u32>,
    /// argon2 verifications run at once (default: one core fewer than the machine has,
    /// at least one), so hashing never takes every core from proxying.
    pub hash_concurrency: Option<usize>,
    /// Secret and password checks that may wait for a verification; past that the token
    /// endpoints answer 503 temporarily_unavailable with Retry-After (default 64).
    pub hash_queue: Option<usize>,
    /// The share of a core one argon2 slot may keep busy, 0.05 to 1 (default 1 with two
    /// cores or more, where one is left to proxying; 0.25 on one core).
    pub hash_cpu_share: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreSync {
    Full,
    Normal,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscoveryFile {
    /// Which family the metadata advertises: `credential` (default) or `auth`.
    pub family: Option<Family>,
    /// The base URL of the listener that asks for client certificates, when clients
    /// reach the issuer elsewhere: advertised as `mtls_endpoint_aliases` (RFC 8705 §5).
    pub mtls_endpoint_base: Option<String>,
}

/// `identity:` of the gateway file: the defaults every API gets, and what only the
/// gateway decides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GatewayIdentityFile {
    pub headers: Option<IdentityHeadersFile>,
    /// Header name → claim path (`x-auth-roles: realm_access.roles`).
    pub claims: Option<BTreeMap<String, String>>,
    pub credential: Option<CredentialModeFile>,
    /// Joins the items of an array claim (default `,`).
    pub separator: Option<String>,
    /// Incoming headers under these prefixes are removed on every route (default
    /// `[x-auth-]`).
    pub remove_prefixes: Option<Vec<String>>,
    /// The longest a phantom token lives (default 5m).
    pub phantom_lifetime: Option<DurationText>,
}

/// The header of each identity field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdentityHeadersFile {
    pub subject: Option<HeaderChoice>,
    pub client_id: Option<HeaderChoice>,
    pub scope: Option<HeaderChoice>,
    pub method: Option<HeaderChoice>,
    pub issuer: Option<HeaderChoice>,
    pub credential: Option<HeaderChoice>,
}

/// A header name, or `off` (or `false`) to leave the field out.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum HeaderChoice {
    Off(bool),
    Name(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CredentialModeFile {
    Keep,
    Strip,
    Phantom,
}

/// `forward_auth:` of the gateway file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ForwardAuthFile {
    /// `ip:port` of the decision listener (loopback unless front proxies run elsewhere).
    pub listen: String,
}

/// `log.access_log`: a format, or a boolean (`true`: text).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum AccessLogFile {
    On(bool),
    Format(String),
}

/// `dpop:` of the gateway file: how DPoP proofs (RFC 9449) are checked, at the token
/// endpoints and at the proxy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DpopFile {
    /// The JWS algorithms a proof may be signed with (default `[ES256, EdDSA]`; asymmetric
    /// ones only).
    pub algorithms: Option<Vec<String>>,
    /// How old a proof's `iat` may be (default 60s); `tokens.leeway` is allowed into the
    /// future.
    pub proof_max_age: Option<DurationText>,
    /// Where used proof ids are remembered: `per_node` (default, in memory) or `cluster`
    /// (the store: one write per proof, refused on every node).
    pub replay: Option<ReplayScope>,
    /// Proof ids one node remembers at most (default 1,000,000); past that, new proofs
    /// are refused until old ones age out.
    pub replay_cache_entries: Option<usize>,
    /// Require the server's nonce in proofs (RFC 9449 §8, §9).
    pub nonce: Option<DpopNonceFile>,
}

/// `dpop.nonce`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DpopNonceFile {
    /// At the token endpoints (default false).
    pub token_endpoints: Option<bool>,
    /// At protected APIs (default false).
    pub resources: Option<bool>,
    /// How long a nonce is accepted (default 5m); a new one is handed out each half of it.
    pub lifetime: Option<DurationText>,
}

/// Where used DPoP proof ids are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayScope {
    PerNode,
    Cluster,
}

/// `admin:` of the gateway file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminFile {
    /// `ip:port` of the admin listener (keep it on loopback or a management network).
    pub listen: String,
    /// Serve the admin API over TLS (client certificates may be required).
    pub tls: Option<TlsListenFile>,
    /// Who may call it.
    #[serde(default)]
    pub keys: Vec<AdminKeyFile>,
    /// The audit log, one JSON line per call (default `admin-audit.log` in `state_dir`).
    pub audit_log: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminKeyFile {
    /// Who the key belongs to, as the audit log names it.
    pub name: String,
    /// Hex SHA-256 of the key (`tollgate admin key` prints both).
    pub sha256: String,
    /// What it may do: `read`, `credentials:write`, `subscriptions:write`,
    /// `registration:write`.
    pub scopes: Vec<String>,
}

/// `registration:` of the gateway file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistrationFile {
    /// Serve RFC 7591 registration at `/credential/register` (default false).
    pub enabled: Option<bool>,
    /// Registration without an initial access token, granting this; absent: every
    /// registration needs one.
    pub open: Option<GrantFile>,
}

/// What a registered client may call: as a credential's `acl`, `products` and `roles`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GrantFile {
    #[serde(default)]
    pub acl: Vec<String>,
    #[serde(default)]
    pub products: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The user pool of clients that sign users in (the authorization code flow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_pool: Option<String>,
}
