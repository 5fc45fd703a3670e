//! The file format of the upstreams file as users write it: APIs, products, user pools,
//! auth policies, credentials, external issuers and tenants. Plain serde structs; meaning
//! is given by validation (`upstreams`, `apis`, `clients`, `issuers`, `tenants`).

use super::errors::Lenient;
use super::file::{CredentialModeFile, DurationText, IdentityHeadersFile};
use super::{GrantType, PolicyKind};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Top level of the upstreams file.
#[derive(Debug, Deserialize)]
pub(crate) struct UpstreamsFile {
    /// The proxied APIs.
    pub apis: Option<Lenient<Vec<Lenient<ApiFile>>>>,
    /// Auth policies ("manage from this policy", `/auth/*`).
    pub policies: Option<Lenient<Vec<Lenient<PolicyFile>>>>,
    /// Consumer credentials ("manage from ACL", `/credential/*`).
    pub credentials: Option<Lenient<Vec<Lenient<CredentialFile>>>>,
    /// Named groups of APIs a credential can be granted together.
    pub products: Option<Lenient<Vec<Lenient<ProductFile>>>>,
    /// Users for the password grant.
    pub user_pools: Option<Lenient<Vec<Lenient<UserPoolFile>>>>,
    /// External identity providers whose JWTs APIs may accept.
    pub issuers: Option<Lenient<Vec<Lenient<IssuerFile>>>>,
    /// The tenant directory of `/auth/{user,admin}/generateToken` and `oidcToken`.
    pub tenants: Option<Lenient<Vec<Lenient<TenantFile>>>>,
    /// A file that declares nothing, or a reload that takes every API or every credential
    /// away, is refused unless this says it is meant.
    pub allow_empty: Option<Lenient<bool>>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_yaml::Value>,
}

/// `auth:` of an API: one mode or a list of them. The words are read in validation, so an
/// unknown one is named there and does not hide the API's other errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum AuthFile {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthWord {
    None,
    Jwt,
    ApiKey,
}

impl AuthWord {
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "none" => Some(Self::None),
            "jwt" => Some(Self::Jwt),
            "api_key" => Some(Self::ApiKey),
            _ => None,
        }
    }
}

/// A request rate per consumer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitFile {
    /// Requests allowed per `per`.
    pub requests: u32,
    /// The period, e.g. `1s` or `1m`.
    pub per: DurationText,
    /// Requests that may come at once before the rate applies (default: `requests`).
    pub burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiKeyFile {
    /// A name for logs and for rotating keys (unique within the credential).
    pub name: String,
    /// Hex SHA-256 of the key (`tollgate api-key --generate` prints both).
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExchangeFile {
    /// External issuers whose tokens this client may exchange.
    pub issuers: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssuerFile {
    /// The name APIs and clients refer to it by.
    pub name: String,
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// Its JWKS URL; without it, OIDC discovery at `{issuer}/.well-known/openid-configuration`.
    pub jwks_uri: Option<String>,
    /// The audiences its tokens must name one of (what tollgate is registered as there).
    pub audiences: Vec<String>,
    /// Accepted JWS algorithms (default RS256, ES256).
    pub algorithms: Option<Vec<String>>,
    /// Required `typ` header, e.g. `at+jwt`.
    pub typ: Option<String>,
    /// Where the scopes are: a claim path such as `roles` or `realm_access.roles`
    /// (default: `scope`, else `scp`).
    pub scope_claim: Option<String>,
    /// The subject claim (default `sub`).
    pub subject_claim: Option<String>,
    /// Clock skew tolerated (default 60s).
    pub leeway: Option<DurationText>,
    /// Key-set caching: bounds on the `Cache-Control` max-age, and the kid-miss cooldown.
    pub keys: Option<IssuerKeysFile>,
    /// Extra trusted CA certificates (PEM) for fetching its keys.
    pub ca_file: Option<String>,
    /// Token exchange: the claim naming the user in the exchanging client's user pool
    /// (default `preferred_username`, then `email`).
    pub user_claim: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssuerKeysFile {
    pub min_lifetime: Option<DurationText>,
    pub max_lifetime: Option<DurationText>,
    pub default_lifetime: Option<DurationText>,
    pub kid_miss_cooldown: Option<DurationText>,
    pub fetch_timeout: Option<DurationText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantFile {
    pub id: String,
    /// APIs tenant tokens are for (their audiences).
    pub apis: Vec<String>,
    /// Lifetime of tenant tokens (default: `tokens.access_token_lifetime`).
    pub access_token_lifetime: Option<DurationText>,
    /// External issuers whose tokens `oidcToken` exchanges, and the claim naming the user.
    #[serde(default)]
    pub oidc_issuers: Vec<String>,
    pub email_claim: Option<String>,
    #[serde(default)]
    pub projects: Vec<ProjectFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProjectFile {
    pub id: String,
    #[serde(default)]
    pub clients: Vec<TenantClientFile>,
    #[serde(default)]
    pub users: Vec<TenantUserFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantClientFile {
    pub client_id: String,
    /// Its secrets, each with an id (`secret_id` in requests); several for rotation.
    pub secrets: Vec<TenantSecretFile>,
    /// Scopes of its own client_credentials tokens.
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantSecretFile {
    pub id: String,
    /// argon2id PHC string (`tollgate hash-secret`).
    pub hash: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantUserFile {
    pub email: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Scopes its tokens carry (checked by the APIs' rules).
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// A tenant administrator (may get admin tokens).
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiFile {
    /// Unique name; the default audience of its tokens.
    pub name: String,
    /// Path prefix that selects this API (matched on `/` boundaries).
    pub prefix: String,
    /// Only match requests for this host (optional).
    pub host: Option<String>,
    /// Remove the prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Where requests go.
    pub upstream: UpstreamFile,
    /// `none`, `jwt`, `api_key`, or a list such as `[jwt, api_key]`.
    pub auth: AuthFile,
    /// `auth: jwt`: the issuers whose tokens it accepts: `tollgate` (its own tokens, the
    /// default) and names from `issuers`.
    pub issuers: Option<Vec<String>>,
    /// `auth: api_key`: the header that carries the key (default `x-api-key`).
    pub api_key_header: Option<String>,
    /// Requests per consumer (credential, or client of a token) to this API.
    pub rate_limit: Option<RateLimitFile>,
    /// Audience its tokens must carry (default: the API name).
    pub audience: Option<String>,
    /// Scopes the API declares (default: those its rules name); its token endpoint grants
    /// no others.
    pub scopes: Option<Vec<String>>,
    /// Per-operation scope requirements, first match wins.
    #[serde(default)]
    pub rules: Vec<RuleFile>,
    /// What its upstream receives about the caller, over the gateway's `identity:`.
    pub identity: Option<ApiIdentityFile>,
    /// `allowed` (default: bearer tokens pass, DPoP-bound ones need their proof) or
    /// `required` (only DPoP-bound tokens with a proof, RFC 9449).
    pub dpop: Option<DpopMode>,
}

/// Whether an API takes bearer tokens beside DPoP-bound ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DpopMode {
    Allowed,
    Required,
}

/// An API's `identity:`: each key given replaces the gateway-wide one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiIdentityFile {
    pub headers: Option<IdentityHeadersFile>,
    pub claims: Option<BTreeMap<String, String>>,
    pub credential: Option<CredentialModeFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamFile {
    /// `host:port` of each server; round robin between them.
    pub servers: Vec<String>,
    /// Connect with TLS.
    pub tls: Option<UpstreamTlsFile>,
    /// `pass` (default), `upstream`, or `{ set: name }`.
    pub host_header: Option<HostHeaderFile>,
    pub connect_timeout: Option<DurationText>,
    pub read_timeout: Option<DurationText>,
    pub write_timeout: Option<DurationText>,
    /// Active health check; without it every server is always eligible.
    pub health_check: Option<HealthCheckFile>,
    /// `http1` (default), `h2` (HTTP/2 over TLS) or `h2c` (HTTP/2 without TLS).
    pub protocol: Option<String>,
    /// How many other servers a request whose connection could not be made tries next
    /// (default and most: each other server once; 0: none).
    pub retries: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamTlsFile {
    /// Server name sent by SNI and verified (default: the host of the server address).
    pub sni: Option<String>,
    /// Verify the upstream certificate (default true).
    pub verify: Option<bool>,
    /// PEM file of the CAs that sign the upstream's certificate (default: system roots).
    pub ca_file: Option<String>,
}

/// `host_header`: `pass`, `upstream`, or `{ set: name }`.
#[derive(Debug, Deserialize)]
#[serde(try_from = "HostHeaderRepr")]
pub(crate) enum HostHeaderFile {
    /// Forward the client's Host.
    Pass,
    /// Use the upstream server's `host:port` as written in `servers`.
    Upstream,
    /// Use this value.
    Set(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum HostHeaderRepr {
    Word(String),
    Set(SetHost),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetHost {
    set: String,
}

/// A `host_header` that is none of the modes.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a host_header mode (pass, upstream, or {{ set: name }})")]
pub(crate) struct UnknownHostHeader(String);

impl TryFrom<HostHeaderRepr> for HostHeaderFile {
    type Error = UnknownHostHeader;

    fn try_from(r: HostHeaderRepr) -> Result<Self, UnknownHostHeader> {
        match r {
            HostHeaderRepr::Word(w) if w == "pass" => Ok(HostHeaderFile::Pass),
            HostHeaderRepr::Word(w) if w == "upstream" => Ok(HostHeaderFile::Upstream),
            HostHeaderRepr::Word(w) => Err(UnknownHostHeader(w)),
            HostHeaderRepr::Set(SetHost { set }) => Ok(HostHeaderFile::Set(set)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum HealthCheckFile {
    /// A TCP (or TLS) connect.
    Tcp {
        interval: Option<DurationText>,
        timeout: Option<DurationText>,
        unhealthy_after: Option<usize>,
        healthy_after: Option<usize>,
    },
    /// A GET that must answer 200.
    Http {
        path: Option<String>,
        interval: Option<DurationText>,
        timeout: Option<DurationText>,
        unhealthy_after: Option<usize>,
        healthy_after: Option<usize>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleFile {
    /// Methods this rule covers (default: all).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Path pattern: literal segments, `*` or `{name}` for one segment, a final `**` for the rest.
    pub path: String,
    /// Every one of these scopes is required.
    #[serde(default)]
    pub all_of: Vec<String>,
    /// At least one of these scopes is required.
    #[serde(default)]
    pub any_of: Vec<String>,
    /// Requests per consumer to this operation, on top of the API's limit.
    pub rate_limit: Option<RateLimitFile>,
    /// How this operation authenticates, instead of the API's `auth` (`none` makes it
    /// public).
    pub auth: Option<AuthFile>,
}

/// Token settings of a policy or credential.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenSettingsFile {
    pub access_token_lifetime: Option<DurationText>,
    /// Access tokens without `exp`.
    #[serde(default)]
    pub immortal: bool,
    /// Issue refresh tokens (and accept grant_type=refresh_token).
    #[serde(default)]
    pub refresh: bool,
    pub refresh_token_lifetime: Option<DurationText>,
    /// Accept token requests as GET with a query string.
    #[serde(default)]
    pub allow_url_parameters: bool,
    /// Credentials: which token formats they may get (`jwt`, `opaque` or `any`, the default).
    pub format: Option<FormatChoice>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatChoice {
    Jwt,
    Opaque,
    Any,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyFile {
    pub name: String,
    /// `jwt` (tokens from `/auth/jwt`) or `oauth2` (opaque tokens from `/auth/token`).
    pub kind: Option<PolicyKind>,
    /// APIs the policy is attached to (one API, or a group).
    pub apis: Vec<String>,
    /// The policy's client key.
    pub client_id: String,
    /// argon2id PHC string of the client secret (`tollgate hash-secret`); none for a
    /// public client (`token_endpoint_auth_method: none`).
    pub client_secret_hash: Option<String>,
    /// Clients of this policy cannot keep a secret: the password and refresh grants accept
    /// `client_secret=-` (or none).
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub grant_types: Vec<GrantType>,
    /// Scopes a client_credentials token of this policy may carry.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Users for the password grant.
    pub user_pool: Option<String>,
    #[serde(default)]
    pub token: TokenSettingsFile,
    /// Authorization code flow: the redirect URIs, matched exactly (for
    /// `http://127.0.0.1` and `http://[::1]` any port, RFC 8252 §7.3).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser back to (matched the same way).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Browser origins allowed to call the token, revoke and userinfo endpoints (CORS).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// `ask` (default) or `skip` (first-party apps): the consent screen.
    pub consent: Option<ConsentMode>,
    /// `client_secret_basic` (default; `client_secret_post` too) or `none` (a public
    /// client: a browser or mobile app that cannot keep a secret).
    pub token_endpoint_auth_method: Option<AuthMethodFile>,
    /// The name the login and consent pages show (default: the client id).
    pub client_name: Option<String>,
    /// Every token request must carry a DPoP proof (RFC 9449 §5.2); its tokens are all
    /// DPoP-bound.
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    /// `tls_client_auth` (RFC 8705 §2.1.2): the certificate's subject, exactly one of these.
    pub tls_client_auth_subject_dn: Option<String>,
    pub tls_client_auth_san_dns: Option<String>,
    pub tls_client_auth_san_uri: Option<String>,
    pub tls_client_auth_san_ip: Option<String>,
    pub tls_client_auth_san_email: Option<String>,
    /// `self_signed_tls_client_auth` (§2.2): the client's certificates.
    #[serde(default)]
    pub tls_client_certificates: Vec<PinnedCertificateFile>,
    /// Every token request comes with a client certificate; its tokens are bound to it.
    #[serde(default)]
    pub tls_client_certificate_bound_access_tokens: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialFile {
    pub client_id: String,
    /// argon2id PHC string of the client secret (`tollgate hash-secret`); none for a
    /// public client (`token_endpoint_auth_method: none`).
    pub client_secret_hash: Option<String>,
    /// APIs this credential may call.
    #[serde(default)]
    pub acl: Vec<String>,
    /// Products whose APIs this credential may call.
    #[serde(default)]
    pub products: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<GrantType>,
    /// Roles: the scopes a client_credentials token of this credential may carry.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Users for the password grant.
    pub user_pool: Option<String>,
    #[serde(default)]
    pub token: TokenSettingsFile,
    /// Keys for `auth: api_key` APIs (`x-api-key`), stored only as SHA-256 digests.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyFile>,
    /// `grant_types: [token_exchange]`: whose tokens it may exchange.
    pub token_exchange: Option<ExchangeFile>,
    /// Authorization code flow: the redirect URIs, matched exactly (for
    /// `http://127.0.0.1` and `http://[::1]` any port, RFC 8252 §7.3).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser back to (matched the same way).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Browser origins allowed to call the token, revoke and userinfo endpoints (CORS).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// `ask` (default) or `skip` (first-party apps): the consent screen.
    pub consent: Option<ConsentMode>,
    /// `client_secret_basic` (default; `client_secret_post` too) or `none` (a public
    /// client: a browser or mobile app that cannot keep a secret).
    pub token_endpoint_auth_method: Option<AuthMethodFile>,
    /// The name the login and consent pages show (default: the client id).
    pub client_name: Option<String>,
    /// Every token request must carry a DPoP proof (RFC 9449 §5.2); its tokens are all
    /// DPoP-bound.
    #[serde(default)]
    pub dpop_bound_access_tokens: bool,
    /// `tls_client_auth` (RFC 8705 §2.1.2): the certificate's subject, exactly one of these.
    pub tls_client_auth_subject_dn: Option<String>,
    pub tls_client_auth_san_dns: Option<String>,
    pub tls_client_auth_san_uri: Option<String>,
    pub tls_client_auth_san_ip: Option<String>,
    pub tls_client_auth_san_email: Option<String>,
    /// `self_signed_tls_client_auth` (§2.2): the client's certificates.
    #[serde(default)]
    pub tls_client_certificates: Vec<PinnedCertificateFile>,
    /// Every token request comes with a client certificate; its tokens are bound to it.
    #[serde(default)]
    pub tls_client_certificate_bound_access_tokens: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMode {
    Ask,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AuthMethodFile {
    ClientSecretBasic,
    ClientSecretPost,
    None,
    TlsClientAuth,
    SelfSignedTlsClientAuth,
}

/// A pinned client certificate: `{ sha256: <64 hex digits> }` or `{ pem: <file> }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PinnedCertificateFile {
    /// SHA-256 of the certificate's DER.
    pub sha256: Option<String>,
    /// A PEM file holding the certificate.
    pub pem: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProductFile {
    pub name: String,
    pub apis: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserPoolFile {
    pub name: String,
    #[serde(default)]
    pub users: Vec<UserFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserFile {
    pub username: String,
    /// argon2id PHC string of the password (`tollgate hash-secret`).
    pub password_hash: String,
    /// Roles, granted as scopes (seed 001: scope = role name).
    #[serde(default)]
    pub roles: Vec<String>,
    /// If set, the APIs this user's tokens may open (within the client's).
    pub acl: Option<Vec<String>>,
    /// OpenID Connect claims: `email` (scope `email`), `name` (scope `profile`).
    pub email: Option<String>,
    pub name: Option<String>,
}
