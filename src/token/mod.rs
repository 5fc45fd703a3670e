//! The token service: the paths the gateway answers itself (token endpoints, discovery,
//! JWKS). HTTP-framework free: the proxy hands over a [`TokenRequest`] and writes the
//! [`Reply`].

pub mod client_auth;
pub mod error;
pub mod form;
pub mod issue;
pub mod secret;
pub mod wellknown;

use crate::auth::cache::unix_now;
use crate::config::{Config, Family, GrantType};
use crate::keys::KeySet;
use crate::metrics::Metrics;
use bytes::Bytes;
use client_auth::presented_client;
use error::{ErrorCode, OAuthError};
use form::{Form, is_form_content_type};
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Method};
use issue::{Registry, Signer, grant_scopes};
use secret::SecretVerifier;
use std::sync::Arc;

/// A path the token service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/{auth,credential}/jwt`: a JWT access token.
    Jwt(Family),
    Jwks,
    Discovery,
    /// Under a reserved prefix but not (yet) an endpoint.
    Unknown,
}

impl Endpoint {
    /// Which endpoint `path` is, if the token service owns it.
    pub fn for_path(path: &str) -> Option<Self> {
        Some(match path {
            "/auth/jwt" => Endpoint::Jwt(Family::Auth),
            "/credential/jwt" => Endpoint::Jwt(Family::Credential),
            "/.well-known/jwks.json" | "/.well-known/jwks" => Endpoint::Jwks,
            "/.well-known/oauth-authorization-server" => Endpoint::Discovery,
            p if ["/auth", "/credential", "/.well-known"].iter().any(|r| {
                p == *r || p.strip_prefix(r).is_some_and(|rest| rest.starts_with('/'))
            }) =>
            {
                Endpoint::Unknown
            }
            _ => return None,
        })
    }

    /// The bounded `endpoint` metric label.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Jwt(Family::Auth) => "/auth/jwt",
            Endpoint::Jwt(Family::Credential) => "/credential/jwt",
            Endpoint::Jwks => "jwks",
            Endpoint::Discovery => "discovery",
            Endpoint::Unknown => "unknown",
        }
    }

    /// Whether the handler reads the request body.
    pub fn reads_body(self) -> bool {
        matches!(self, Endpoint::Jwt(_))
    }
}

/// What the proxy passes in: the parts of the request the token service looks at.
pub struct TokenRequest<'a> {
    pub method: &'a Method,
    pub content_type: Option<&'a [u8]>,
    /// The `Authorization` value; `Err` when the header was sent more than once.
    pub authorization: Result<Option<&'a [u8]>, ()>,
    pub body: &'a [u8],
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

    fn no_store(mut self) -> Self {
        self.headers
            .push((CACHE_CONTROL, HeaderValue::from_static("no-store")));
        self.headers
            .push((PRAGMA, HeaderValue::from_static("no-cache")));
        self
    }

    fn public(mut self) -> Self {
        self.headers.push((
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        ));
        self
    }

    pub fn not_found() -> Self {
        Self::json(
            404,
            r#"{"error":"not_found","error_description":"no such endpoint"}"#,
        )
    }

    fn oauth_error(e: &OAuthError) -> Self {
        let mut r = Self::json(e.status(), e.body()).no_store();
        if e.status() == 405 {
            r.headers.push((ALLOW, HeaderValue::from_static("POST")));
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

/// Issues tokens and serves discovery and JWKS.
pub struct TokenService {
    keys: Arc<KeySet>,
    signer: Signer,
    registry: Registry,
    secrets: SecretVerifier,
    discovery: Bytes,
    metrics: Arc<Metrics>,
}

impl TokenService {
    pub fn new(config: &Config, keys: Arc<KeySet>, metrics: Arc<Metrics>) -> Result<Self, String> {
        Ok(Self {
            signer: Signer::new(keys.clone(), Arc::from(config.issuer.as_str())),
            keys,
            registry: Registry::from_config(config),
            secrets: SecretVerifier::new(config.client_auth_cache)?,
            discovery: wellknown::discovery_document(config),
            metrics,
        })
    }

    pub async fn handle(&self, endpoint: Endpoint, req: TokenRequest<'_>) -> Reply {
        match endpoint {
            Endpoint::Jwks => self.document(req.method, self.keys.jwks_json()),
            Endpoint::Discovery => self.document(req.method, &self.discovery),
            Endpoint::Unknown => Reply::not_found(),
            Endpoint::Jwt(family) => match self.jwt(family, &req).await {
                Ok(reply) => reply,
                Err(e) => {
                    self.metrics
                        .token_errors
                        .with_label_values(&[endpoint.label(), e.code.as_str()])
                        .inc();
                    Reply::oauth_error(&e)
                }
            },
        }
    }

    fn document(&self, method: &Method, body: &Bytes) -> Reply {
        if method == Method::GET || method == Method::HEAD {
            Reply::json(200, body.clone()).public()
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

    async fn jwt(&self, family: Family, req: &TokenRequest<'_>) -> Result<Reply, OAuthError> {
        if req.method != Method::POST {
            return Err(
                OAuthError::invalid_request("the token endpoint takes POST").with_status(405)
            );
        }
        if !req.content_type.is_some_and(is_form_content_type) {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let authorization = req
            .authorization
            .map_err(|_| OAuthError::invalid_request("Authorization is sent more than once"))?;
        let form = Form::parse(req.body)?;
        let grant = match form.require("grant_type")? {
            "client_credentials" => GrantType::ClientCredentials,
            _ => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedGrantType,
                    "this endpoint supports grant_type=client_credentials",
                ));
            }
        };
        let presented = presented_client(authorization, &form)?;
        let client = self.registry.get(family, &presented.id);
        let Some(secret) = &presented.secret else {
            return Err(presented.rejected("client_secret is required"));
        };
        let verified = self
            .secrets
            .verify(
                &presented.id,
                secret.expose(),
                client.map(|c| &c.secret_hash),
            )
            .await;
        let client = match client {
            Some(c) if verified => c,
            _ => return Err(presented.rejected("client authentication failed")),
        };
        if !client.grant_types.contains(&grant) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use this grant type",
            ));
        }
        let scopes = grant_scopes(form.get("scope"), &client.scopes)?;
        let issued = self.signer.jwt(client, &scopes, unix_now())?;
        self.metrics
            .tokens_issued
            .with_label_values(&[Endpoint::Jwt(family).label(), grant.as_str()])
            .inc();
        let mut body = serde_json::json!({
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
        });
        if !issued.scope.is_empty() {
            body["scope"] = serde_json::Value::String(issued.scope);
        }
        Ok(Reply::json(200, body.to_string()).no_store())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_by_path() {
        assert_eq!(
            Endpoint::for_path("/auth/jwt"),
            Some(Endpoint::Jwt(Family::Auth))
        );
        assert_eq!(
            Endpoint::for_path("/credential/jwt"),
            Some(Endpoint::Jwt(Family::Credential))
        );
        assert_eq!(
            Endpoint::for_path("/.well-known/jwks"),
            Some(Endpoint::Jwks)
        );
        assert_eq!(
            Endpoint::for_path("/.well-known/jwks.json"),
            Some(Endpoint::Jwks)
        );
        assert_eq!(
            Endpoint::for_path("/.well-known/oauth-authorization-server"),
            Some(Endpoint::Discovery)
        );
        assert_eq!(Endpoint::for_path("/auth/other"), Some(Endpoint::Unknown));
        assert_eq!(Endpoint::for_path("/auth"), Some(Endpoint::Unknown));
        assert_eq!(Endpoint::for_path("/authors"), None);
        assert_eq!(Endpoint::for_path("/orders"), None);
    }
}
