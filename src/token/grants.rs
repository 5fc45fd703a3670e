//! The grants of the token endpoints: client_credentials, password and refresh_token (with
//! rotation, a grace period for concurrent refreshes, and reuse detection that revokes the
//! whole grant, RFC 9700 §4.14.2).

use super::error::{ErrorCode, OAuthError};
use super::issue::{Issue, Minted, grant_id, grant_scopes};
use super::limits::Subject;
use super::{Reply, SecretRule, TokenRequest, TokenService, Via, method_not_allowed, unavailable};
use crate::catalog::registry::{ApiInfo, Client};
use crate::domain::clock::unix_now;
use crate::domain::clock::unix_now_ms;
use crate::domain::cnf::Confirmation;
use crate::domain::oauth::TokenKind;
use crate::domain::oauth::{Family, Format, GrantType};
use crate::opaque;
use crate::store::{Revocation, RevocationTarget, Rotation, digest};
use std::sync::Arc;

/// Where a token request arrived.
pub(super) struct Target<'a> {
    pub family: Family,
    pub format: Format,
    /// The API of an API token endpoint.
    pub api: Option<&'a ApiInfo>,
    pub grants: &'static [GrantType],
    pub label: &'static str,
    /// What the issued tokens are bound to: the DPoP key the request proved, or its
    /// client certificate (`binding::binding`).
    pub cnf: Option<Confirmation>,
}

const ALL_GRANTS: &[GrantType] = &GrantType::ALL;

pub(super) fn no_id() -> OAuthError {
    OAuthError::new(ErrorCode::ServerError, "no randomness available")
}

fn invalid_grant(d: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, d)
}

impl TokenService {
    /// `/{family}/token` (opaque) and `/{family}/jwt` (JWT).
    pub(super) async fn token(
        &self,
        family: Family,
        format: Format,
        req: &TokenRequest<'_>,
    ) -> Result<Reply, OAuthError> {
        let label = super::Endpoint::Token { family, format }.label();
        self.issue(
            Target {
                family,
                format,
                api: None,
                grants: ALL_GRANTS,
                label,
                cnf: None,
            },
            req,
        )
        .await
    }

    /// `/{family}/jwt/regenerate`: refresh a JWT.
    pub(super) async fn regenerate(
        &self,
        family: Family,
        req: &TokenRequest<'_>,
    ) -> Result<Reply, OAuthError> {
        let label = super::Endpoint::Regenerate(family).label();
        self.issue(
            Target {
                family,
                format: Format::Jwt,
                api: None,
                grants: &[GrantType::RefreshToken],
                label,
                cnf: None,
            },
            req,
        )
        .await
    }

    /// `<api prefix>/oauth2/v2/token`: a credential's JWT for one API (seed 002).
    pub(super) async fn api_token(
        &self,
        api: &str,
        req: &TokenRequest<'_>,
    ) -> Result<Reply, OAuthError> {
        let registry = self.registry();
        let Some(info) = registry.api(api) else {
            return Ok(Reply::not_found());
        };
        self.issue(
            Target {
                family: Family::Credential,
                format: Format::Jwt,
                api: Some(info),
                grants: &[
                    GrantType::ClientCredentials,
                    GrantType::TokenExchange,
                    GrantType::AuthorizationCode,
                ],
                label: "api_token",
                cnf: None,
            },
            req,
        )
        .await
    }

    async fn issue(&self, mut t: Target<'_>, req: &TokenRequest<'_>) -> Result<Reply, OAuthError> {
        let (form, via) = Self::params(req)?;
        let now = unix_now();
        // The proof first: it is cheap to check, and a nonce challenge should not wait
        // for the client's secret to be checked.
        let proven = self.proven_key(req, now).await?;
        let presented = Self::presented(req, &form)?;
        if via == Via::Url
            && !self
                .registry()
                .client(t.family, &presented.id)
                .is_some_and(|c| c.token.allow_url_parameters)
        {
            return Err(method_not_allowed());
        }
        let grant = GrantType::parse(form.require("grant_type")?)
            .filter(|g| t.grants.contains(g))
            .ok_or_else(|| {
                let names: Vec<&str> = t.grants.iter().map(|g| g.as_str()).collect();
                OAuthError::new(
                    ErrorCode::UnsupportedGrantType,
                    format!("this endpoint supports grant_type {}", names.join(", ")),
                )
            })?;
        let rule = match grant {
            GrantType::ClientCredentials | GrantType::TokenExchange => SecretRule::Required,
            GrantType::Password | GrantType::RefreshToken | GrantType::AuthorizationCode => {
                SecretRule::PublicAllowed
            }
        };
        let client = self.authenticate(t.family, &presented, rule, req).await?;
        t.cnf = super::binding::binding(&client, proven, req.client_cert)?;
        if !client.grant_types.contains(&grant) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use this grant type",
            ));
        }
        if !client.token.allows(t.format) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                match t.format {
                    Format::Jwt => "this client gets opaque tokens: use the /token endpoint",
                    Format::Opaque => "this client gets JWTs: use the /jwt endpoint",
                },
            ));
        }
        let minted = match grant {
            GrantType::ClientCredentials => {
                self.client_credentials(&client, &form, &t, now).await?
            }
            GrantType::Password => {
                self.password(&client, &form, &t, now, req.client_ip)
                    .await?
            }
            GrantType::RefreshToken => self.refresh(&client, &form, &t, now).await?,
            GrantType::TokenExchange => self.token_exchange(&client, &form, &t, now).await?,
            GrantType::AuthorizationCode => {
                self.authorization_code(&client, &form, &t, now).await?
            }
        };
        self.metrics
            .tokens_issued
            .with_label_values(&[t.label, grant.as_str()])
            .inc();
        log::debug!(
            "{}: issued a token to client {} (grant {}, scope \"{}\", refresh token: {})",
            t.label,
            client.id,
            grant.as_str(),
            minted.scope,
            if minted.refresh_token.is_some() {
                "yes"
            } else {
                "no"
            },
        );
        let mut reply = Reply::no_store(200, minted.body());
        if let Some(nonce) = self.fresh_nonce(now)
            && let Ok(v) = http::HeaderValue::from_str(&nonce)
        {
            reply.headers.push((super::DPOP_NONCE.clone(), v));
        }
        Ok(reply)
    }

    pub(super) async fn persist(&self, minted: &mut Minted) -> Result<(), OAuthError> {
        let records = std::mem::take(&mut minted.records);
        if records.is_empty() {
            return Ok(());
        }
        self.store.insert(records).await.map_err(unavailable)
    }

    async fn client_credentials(
        &self,
        client: &Arc<Client>,
        form: &super::form::Form,
        t: &Target<'_>,
        now: i64,
    ) -> Result<Minted, OAuthError> {
        let (scopes, audiences) = match t.api {
            None => (
                grant_scopes(form.get("scope"), &client.scopes)?,
                client.audiences.clone(),
            ),
            Some(api) => {
                if !client.apis.contains(&api.name) {
                    return Err(OAuthError::new(
                        ErrorCode::UnauthorizedClient,
                        "this credential may not call this API",
                    ));
                }
                // requested ∩ granted ∩ declared by the API.
                let allowed: Vec<String> = client
                    .scopes
                    .iter()
                    .filter(|s| api.scopes.contains(s))
                    .cloned()
                    .collect();
                (
                    grant_scopes(form.get("scope"), &allowed)?,
                    vec![api.audience.clone()],
                )
            }
        };
        let grant_id = grant_id(unix_now_ms()).ok_or_else(no_id)?;
        let mut minted = self.signer.mint(Issue {
            client,
            username: None,
            scopes: &scopes,
            audiences: &audiences,
            format: t.format,
            grant_id: &grant_id,
            with_refresh: t.api.is_none(),
            now,
            subject: None,
            tenant: None,
            cnf: t.cnf,
        })?;
        self.persist(&mut minted).await?;
        Ok(minted)
    }

    async fn password(
        &self,
        client: &Arc<Client>,
        form: &super::form::Form,
        t: &Target<'_>,
        now: i64,
        ip: Option<std::net::IpAddr>,
    ) -> Result<Minted, OAuthError> {
        let username = form.require("username")?;
        let password = form.require("password")?;
        let pool = client.pool.as_ref().ok_or_else(|| {
            OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client has no user pool",
            )
        })?;
        let subject = Subject::User {
            pool: &pool.name,
            username,
        };
        self.limiter
            .check(subject, ip)
            .map_err(|t| self.throttled(t))?;
        let user = pool.users.get(username);
        // Users are keyed apart from clients in the verification cache.
        let cache_id = format!("user\u{0}{}\u{0}{username}", pool.name);
        let verified = self
            .secrets
            .verify(&cache_id, password, user.map(|u| &u.password_hash))
            .await
            .map_err(super::shed)?;
        let user = match user {
            Some(u) if verified => u,
            _ => {
                self.limiter.failed(subject, ip);
                return Err(invalid_grant("the username or password is wrong"));
            }
        };
        let scopes = grant_scopes(form.get("scope"), &user.roles)?;
        let audiences =
            self.registry()
                .permitted_audiences(&client.id, Some(username), &client.audiences);
        if audiences.is_empty() {
            return Err(invalid_grant(
                "this user may not call the APIs of this client",
            ));
        }
        let grant_id = grant_id(unix_now_ms()).ok_or_else(no_id)?;
        let mut minted = self.signer.mint(Issue {
            client,
            username: Some(&user.username),
            scopes: &scopes,
            audiences: &audiences,
            format: t.format,
            grant_id: &grant_id,
            with_refresh: true,
            now,
            subject: None,
            tenant: None,
            cnf: t.cnf,
        })?;
        self.persist(&mut minted).await?;
        Ok(minted)
    }

    async fn refresh(
        &self,
        client: &Arc<Client>,
        form: &super::form::Form,
        t: &Target<'_>,
        now: i64,
    ) -> Result<Minted, OAuthError> {
        let presented = form.require("refresh_token")?;
        if opaque::kind_of(presented) != Some(opaque::Kind::Refresh) {
            return Err(invalid_grant("not a refresh token"));
        }
        let used = digest(presented);
        let record = self
            .store
            .get(&used)
            .await
            .map_err(unavailable)?
            .filter(|r| r.kind == TokenKind::Refresh)
            .ok_or_else(|| invalid_grant("unknown refresh token"))?;
        if record.client_id != client.id || record.family != t.family {
            return Err(invalid_grant(
                "the refresh token was not issued to this client",
            ));
        }
        // A public client's refresh token is bound to its DPoP key (RFC 9449 §5).
        if let Some(bound) = record.cnf
            && t.cnf != Some(bound)
        {
            return Err(super::proof::invalid_proof(
                "this refresh token is bound to a DPoP key: send a proof of that key",
            ));
        }
        if !record.is_live(now)
            || self
                .auth
                .revocations()
                .is_revoked(record.revocation_subject())
        {
            return Err(invalid_grant("the refresh token expired or was revoked"));
        }
        // What the current configuration still allows this grant.
        let audiences = self.registry().permitted_audiences(
            &client.id,
            record.username.as_deref(),
            &record.audiences,
        );
        if audiences.is_empty() {
            return Err(invalid_grant("this grant may no longer call any API"));
        }
        let allowed_now: &[String] = match record.username.as_deref() {
            None => &client.scopes,
            Some(name) => {
                &client
                    .pool
                    .as_ref()
                    .and_then(|p| p.users.get(name))
                    .ok_or_else(|| invalid_grant("the user of this grant no longer exists"))?
                    .roles
            }
        };
        let original: Vec<&str> = record.scope.split(' ').filter(|s| !s.is_empty()).collect();
        if let Some(requested) = form.get("scope")
            && requested
                .split(' ')
                .any(|s| !s.is_empty() && !original.contains(&s))
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "a refresh cannot add scopes the grant did not have",
            ));
        }
        let still: Vec<String> = original
            .iter()
            .filter(|s| allowed_now.iter().any(|a| a == *s))
            .map(|s| s.to_string())
            .collect();
        let scopes = grant_scopes(form.get("scope"), &still)?;
        let mut minted = self.signer.mint(Issue {
            client,
            username: record.username.as_deref(),
            scopes: &scopes,
            audiences: &audiences,
            format: t.format,
            grant_id: &record.grant_id,
            with_refresh: true,
            now,
            subject: None,
            tenant: None,
            cnf: t.cnf,
        })?;
        let successors = std::mem::take(&mut minted.records);
        let reuse_until = self.remember_until(client, now);
        let grace = self.settings.refresh_grace.as_secs() as i64;
        match self
            .store
            .rotate(used, successors, now, grace, reuse_until)
            .await
            .map_err(unavailable)?
        {
            Rotation::Rotated | Rotation::WithinGrace => Ok(minted),
            Rotation::Reused { grant_id } => {
                self.auth.revocations().add(&[Revocation {
                    target: RevocationTarget::Grant(grant_id),
                    until: reuse_until,
                }]);
                log::warn!(
                    "refresh token reused after rotation: every token of that grant of client {} is revoked",
                    client.id
                );
                Err(invalid_grant(
                    "this refresh token was already used; every token of its grant is revoked",
                ))
            }
            Rotation::Inactive => Err(invalid_grant("the refresh token expired or was revoked")),
        }
    }

    /// How long a revoked grant must be remembered: until its last access token expires.
    pub(super) fn remember_until(&self, client: &Client, now: i64) -> Option<i64> {
        client.access_lifetime().map(|l| {
            now.saturating_add(l.as_secs() as i64)
                .saturating_add(self.auth.validator().leeway())
        })
    }
}
