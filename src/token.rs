//! The token service: the paths the gateway answers itself (token, refresh, introspection,
//! revocation, discovery, JWKS), for both management families. HTTP-framework free: the
//! proxy hands over a [`TokenRequest`] and writes the [`Reply`].
//!
//! [`TokenService::handle`] dispatches by [`Endpoint`]; each endpoint family's methods live
//! in the file named after it: `grants` (`/token`, `/jwt`, `/jwt/regenerate`, the per-API
//! token, and the client_credentials, password and refresh grants), `code_grant`,
//! `exchange` (RFC 8693), `introspect`, `revoke`, `userinfo`, `cors`, `tenant` (seed 003's
//! endpoints) and `authorize` (the browser flow). Discovery and JWKS are served here.

pub mod authorize;
mod binding;
pub mod client_auth;
mod code_grant;
mod cors;
pub mod error;
mod exchange;
pub mod form;
mod grants;
mod introspect;
pub mod issue;
pub mod limits;
mod proof;
mod register;
mod revoke;
pub mod secret;
mod tenant;
mod userinfo;

use crate::auth::Authenticator;
use crate::auth::refusal::Refusal;
use crate::catalog::Live;
use crate::catalog::registry::{Client, Registry};
use crate::config::Config;
use crate::domain::endpoint::Endpoint;
use crate::domain::oauth::Family;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::store::Store;
use bytes::Bytes;
use client_auth::PresentedClient;
use error::{ErrorCode, OAuthError};
use form::{Form, is_form_content_type};
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Method};
use issue::Signer;
use limits::{AttemptLimiter, Subject, Throttled};
use secret::{Busy, SecretVerifier};
use std::sync::Arc;
use std::time::Duration;

/// `DPoP-Nonce` (RFC 9449 §8): the nonce the next proof must carry.
pub static DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// What the proxy passes in: the parts of the request the token service looks at.
pub struct TokenRequest<'a> {
    pub method: &'a Method,
    pub content_type: Option<&'a [u8]>,
    /// The `Authorization` value; `Err` when the header was sent more than once.
    pub authorization: Result<Option<&'a [u8]>, ()>,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    /// The client's address (for the per-address brute-force limit).
    pub client_ip: Option<std::net::IpAddr>,
    /// `Cookie` (several headers joined by `; `) and `Origin`, for the browser flow.
    pub cookie: Option<&'a str>,
    pub origin: Option<&'a [u8]>,
    /// `Sec-Fetch-Site` (Fetch Metadata): where a browser says the request comes from.
    pub fetch_site: Option<&'a [u8]>,
    /// Whether the request came over TLS.
    pub tls: bool,
    /// The `DPoP` proof; `Err` when the header was sent more than once or is not text.
    pub dpop: Result<Option<&'a str>, crate::dpop::NotOneProof>,
    /// `Host` (or `:authority`) and path: the URL a DPoP proof's `htu` must name.
    pub host: Option<&'a str>,
    pub path: &'a str,
    /// The client certificate of the TLS connection, on a listener that asks for one.
    pub client_cert: Option<&'a crate::domain::certificate::ClientCertificate>,
}

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Reply {
    fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body: body.into(),
        }
    }

    /// A token-endpoint response: never cached (RFC 6749 §5.1).
    fn no_store(status: u16, body: impl Into<Bytes>) -> Self {
        let mut r = Self::json(status, body);
        r.headers
            .push((CACHE_CONTROL, HeaderValue::from_static("no-store")));
        r.headers
            .push((PRAGMA, HeaderValue::from_static("no-cache")));
        r
    }

    fn public(mut self, max_age: &HeaderValue) -> Self {
        self.headers.push((CACHE_CONTROL, max_age.clone()));
        self
    }

    /// An empty token-endpoint response (revocation).
    fn empty() -> Self {
        Self {
            status: 200,
            headers: vec![
                (CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (PRAGMA, HeaderValue::from_static("no-cache")),
            ],
            body: Bytes::new(),
        }
    }

    pub fn not_found() -> Self {
        Self::json(
            404,
            r#"{"error":"not_found","error_description":"no such endpoint"}"#,
        )
    }

    fn oauth_error(e: &OAuthError) -> Self {
        let mut r = Self::no_store(e.status(), e.body());
        if e.status() == 405 {
            r.headers.push((ALLOW, HeaderValue::from_static("POST")));
        }
        if let Some(secs) = e.retry_after.or((e.status() == 503).then_some(1)) {
            r.headers
                .push((http::header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        if let Some(nonce) = &e.dpop_nonce
            && let Ok(v) = HeaderValue::from_str(nonce)
        {
            r.headers.push((DPOP_NONCE.clone(), v));
        }
        if e.basic_challenge && e.status() == 401 {
            r.headers.push((
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tollgate\""),
            ));
        }
        r
    }
}

/// Why the token service cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Secrets(#[from] secret::VerifierError),
    #[error("tokens.jwks_max_age: {0}")]
    CacheHeader(http::header::InvalidHeaderValue),
}

impl From<Refusal> for Reply {
    fn from(r: Refusal) -> Self {
        let body = r.body();
        let mut reply = Reply::json(r.status, body);
        reply.headers.extend(r.headers);
        reply
    }
}

/// Token service settings that are not per client.
pub struct ServiceSettings {
    /// How long a used refresh token may be used again (concurrent refreshes).
    pub refresh_grace: Duration,
    /// `Cache-Control` of JWKS and discovery: `public, max-age=<tokens.jwks_max_age>`.
    pub public_cache: HeaderValue,
    /// How long a browser stays signed in at the login page.
    pub session_lifetime: Duration,
}

/// Issues, refreshes, introspects and revokes tokens; serves discovery and JWKS.
impl TokenService {
    /// See [`SecretVerifier::size_reader`].
    pub fn secret_cache_size(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        self.secrets.size_reader()
    }
}

pub struct TokenService {
    keys: Arc<KeyRing>,
    signer: Signer,
    catalog: Arc<Live>,
    secrets: SecretVerifier,
    limiter: AttemptLimiter,
    store: Arc<dyn Store>,
    auth: Arc<Authenticator>,
    metrics: Arc<Metrics>,
    settings: ServiceSettings,
    dpop: Arc<crate::dpop::Dpop>,
    /// Dynamic client registration's credentials.
    provisioner: Arc<crate::provision::Provisioner>,
}

/// How a request's parameters arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Body,
    Url,
}

/// Whether a client may authenticate without a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretRule {
    Required,
    /// Policies that declare their clients public may send `client_secret=-` (or none).
    PublicAllowed,
}

impl TokenService {
    /// The service on `provisioner`'s store and catalog (dynamic client registration
    /// provisions through it).
    pub fn new(
        config: &Config,
        keys: Arc<KeyRing>,
        provisioner: Arc<crate::provision::Provisioner>,
        auth: Arc<Authenticator>,
        metrics: Arc<Metrics>,
        dpop: Arc<crate::dpop::Dpop>,
    ) -> Result<Self, SetupError> {
        let catalog = provisioner.live().clone();
        let store = provisioner.store().clone();
        Ok(Self {
            signer: Signer::new(keys.clone(), Arc::from(config.issuer.as_str())),
            keys,
            catalog,
            secrets: SecretVerifier::new(
                config.client_auth_cache,
                &config.limits,
                metrics.secret_verifications.clone(),
            )?,
            limiter: AttemptLimiter::new(config.limits),
            store,
            auth,
            metrics,
            dpop,
            provisioner,
            settings: ServiceSettings {
                refresh_grace: config.tokens.refresh_grace_period,
                public_cache: HeaderValue::from_str(&format!(
                    "public, max-age={}",
                    config.tokens.jwks_max_age.as_secs()
                ))
                .map_err(SetupError::CacheHeader)?,
                session_lifetime: config.tokens.session_lifetime,
            },
        })
    }

    pub async fn handle(&self, endpoint: &Endpoint, req: TokenRequest<'_>) -> Reply {
        let cors = matches!(
            endpoint,
            Endpoint::Token { .. }
                | Endpoint::Regenerate(_)
                | Endpoint::ApiToken(_)
                | Endpoint::Revoke(_)
                | Endpoint::UserInfo
        );
        if cors && *req.method == Method::OPTIONS {
            return self.preflight(endpoint, &req);
        }
        let mut reply = self.answer(endpoint, &req).await;
        if cors {
            self.allow_origin(endpoint, &req, &mut reply);
        }
        reply
    }

    async fn answer(&self, endpoint: &Endpoint, req: &TokenRequest<'_>) -> Reply {
        let result = match endpoint {
            Endpoint::Authorize { family, api } => {
                return self.authorize(*family, api.as_deref(), req).await;
            }
            Endpoint::Login => return self.login(req).await,
            Endpoint::Consent => return self.consent(req).await,
            Endpoint::Logout => return self.logout(req).await,
            Endpoint::UserInfo => return self.userinfo(req).await,
            Endpoint::OidcDiscovery => {
                let doc = self.catalog.load().oidc_discovery.clone();
                return self.document(req.method, &doc);
            }
            Endpoint::Jwks => return self.document(req.method, self.keys.get().jwks_json()),
            Endpoint::Discovery => {
                let discovery = self.catalog.load().discovery.clone();
                return self.document(req.method, &discovery);
            }
            Endpoint::ResourceMetadata(api) => return self.resource_metadata(req.method, api),
            Endpoint::Unknown => return Reply::not_found(),
            Endpoint::Register(id) => return self.registration(id.as_ref(), req).await,
            Endpoint::Token { family, format } => self.token(*family, *format, req).await,
            Endpoint::Regenerate(family) => self.regenerate(*family, req).await,
            Endpoint::ApiToken(api) => self.api_token(api, req).await,
            Endpoint::Introspect(family) => self.introspect(*family, req).await,
            Endpoint::Revoke(family) => self.revoke(*family, req).await,
            Endpoint::Tenant { admin, oidc } => self.tenant_token(*admin, *oidc, req).await,
        };
        result.unwrap_or_else(|e| {
            self.metrics
                .token_errors
                .with_label_values(&[endpoint.label(), e.code.as_str()])
                .inc();
            if e.code == ErrorCode::ServerError {
                log::error!("{}: {}", endpoint.label(), e.description);
            } else {
                log::debug!(
                    "{}: refused a request from {}: {} ({})",
                    endpoint.label(),
                    req.client_ip
                        .map_or_else(|| "-".to_string(), |ip| ip.to_string()),
                    e.code.as_str(),
                    e.description
                );
            }
            Reply::oauth_error(&e)
        })
    }

    fn document(&self, method: &Method, body: &Bytes) -> Reply {
        if method == Method::GET || method == Method::HEAD {
            Reply::json(200, body.clone()).public(&self.settings.public_cache)
        } else {
            let mut r = Reply::json(
                405,
                r#"{"error":"method_not_allowed","error_description":"use GET"}"#,
            );
            r.headers
                .push((ALLOW, HeaderValue::from_static("GET, HEAD")));
            r
        }
    }

    /// The request parameters: a form body for POST, the query string for GET (allowed
    /// only to clients whose settings say so, checked once the client is known).
    fn params(req: &TokenRequest<'_>) -> Result<(Form, Via), OAuthError> {
        if *req.method == Method::POST {
            if !req.content_type.is_some_and(is_form_content_type) {
                return Err(OAuthError::invalid_request(
                    "the body must be application/x-www-form-urlencoded",
                ));
            }
            return Ok((Form::parse(req.body)?, Via::Body));
        }
        if *req.method == Method::GET && req.query.is_some_and(|q| !q.is_empty()) {
            return Ok((
                Form::parse(req.query.unwrap_or_default().as_bytes())?,
                Via::Url,
            ));
        }
        Err(method_not_allowed())
    }

    fn presented(req: &TokenRequest<'_>, form: &Form) -> Result<PresentedClient, OAuthError> {
        let authorization = req
            .authorization
            .map_err(|_| OAuthError::invalid_request("Authorization is sent more than once"))?;
        client_auth::presented_client(authorization, form)
    }

    /// Authenticate the presented client of `family`.
    async fn authenticate(
        &self,
        family: Family,
        presented: &PresentedClient,
        rule: SecretRule,
        req: &TokenRequest<'_>,
    ) -> Result<Arc<Client>, OAuthError> {
        let ip = req.client_ip;
        let registry = self.registry();
        let client = registry.client(family, &presented.id);
        let client = client.as_ref();
        if let Some(c) = client
            && let Some(auth) = &c.certificate_auth
        {
            return binding::certificate_client(c, auth, presented, req.client_cert);
        }
        let secret = presented.secret.as_ref().map(|s| s.expose().as_str());
        if let Some(c) = client
            && rule == SecretRule::PublicAllowed
            && c.public
            && secret.is_none_or(|s| s == "-")
        {
            return Ok(c.clone());
        }
        // A public client (`token_endpoint_auth_method: none`) names itself only; the
        // grants it may use (authorization code with PKCE, rotating refresh tokens) carry
        // their own proof.
        if let Some(c) = client
            && rule == SecretRule::PublicAllowed
            && c.browser.public
            && secret.is_none()
        {
            return Ok(c.clone());
        }
        let Some(secret) = secret else {
            return Err(presented.rejected("client authentication is required"));
        };
        let subject = Subject::Client(&presented.id);
        self.limiter
            .check(subject, ip)
            .map_err(|t| self.throttled(t))?;
        let verified = match client {
            // Several secrets (a tenant client rotating them): any of them.
            Some(c) if c.secrets.len() > 1 => {
                let mut ok = false;
                for (id, hash) in &c.secrets {
                    let cache_id =
                        format!("{}\u{0}{}", presented.id, id.as_deref().unwrap_or_default());
                    if self
                        .secrets
                        .verify(&cache_id, secret, Some(hash))
                        .await
                        .map_err(shed)?
                    {
                        ok = true;
                        break;
                    }
                }
                ok
            }
            Some(c) => self
                .secrets
                .verify(&presented.id, secret, Some(&c.secret_hash))
                .await
                .map_err(shed)?,
            // Client ids are public (RFC 6749 §2.2: "not a secret"), so refusing an unknown
            // one at once reveals nothing the id does not: no argon2 run for a flood of
            // made-up ids. (Usernames are not public: an unknown user still costs one.)
            None => false,
        };
        match client {
            Some(c) if verified => Ok(c.clone()),
            _ => {
                self.limiter.failed(subject, ip);
                Err(presented.rejected("client authentication failed"))
            }
        }
    }

    /// Check a presented access token as the proxy would, under the running catalog;
    /// `external`: tokens of its external issuers count too.
    async fn check_token(
        &self,
        token: &str,
        now: i64,
        external: bool,
    ) -> Result<crate::auth::Principal, crate::domain::outcome::Outcome> {
        let catalog = self.catalog.current();
        let none = crate::idp::Issuers::none();
        let ctx = crate::auth::CheckContext {
            now,
            issuers: if external { &catalog.issuers } else { &none },
            plan: &catalog.plan,
        };
        self.auth.authenticate(token, &ctx).await.result
    }

    /// The clients and APIs as configured now (a reload replaces them).
    fn registry(&self) -> Arc<Registry> {
        self.catalog.load().registry.clone()
    }

    /// The 429 answer to an attempt past a brute-force limit.
    fn throttled(&self, t: Throttled) -> OAuthError {
        self.metrics
            .auth_throttled
            .with_label_values(&[t.label])
            .inc();
        let mut e = OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "too many failed authentication attempts; retry later",
        )
        .with_status(429);
        e.retry_after = Some(t.retry_after_secs);
        e
    }
}

/// The answer when too many secret checks wait for argon2: the request is shed, with a
/// hint when to come back, rather than queued without bound.
fn shed(_: Busy) -> OAuthError {
    let mut e = OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "too many credential checks are waiting; retry shortly",
    );
    e.retry_after = Some(1);
    e
}

fn method_not_allowed() -> OAuthError {
    OAuthError::invalid_request("use POST with an application/x-www-form-urlencoded body")
        .with_status(405)
}

/// The store failed: tell the client to retry (without internal details). The store
/// logs the outage itself, once and then as reminders, not once per refused request.
fn unavailable(e: crate::store::StoreError) -> OAuthError {
    log::debug!("token endpoint: store unavailable: {e}");
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the token store is unavailable; try again",
    )
}
