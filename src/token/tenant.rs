//! The tenant token endpoints of seed 003: `POST /auth/{user,admin}/generateToken` (a
//! client of the tenant proves one of its secrets and names a user of its project) and
//! `POST /auth/{user,admin}/oidcToken` (an application, authenticated by its bearer token,
//! exchanges a user's token from an external issuer). Both answer
//! `{access_token, expires_in, token_type}`, errors 400 / 401 / 404 / 500.

use super::error::{ErrorCode, OAuthError};
use super::issue::{Issue, grant_id};
use super::limits::Subject;
use super::{Reply, TokenRequest, TokenService, client_auth};
use crate::catalog::registry::{Client, Project, Tenant};
use crate::domain::clock::unix_now;
use crate::domain::clock::unix_now_ms;
use crate::domain::oauth::Format;
use crate::jwt::TenantClaims;
use http::Method;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateBody {
    client_id: String,
    email_id: String,
    project_id: String,
    #[serde(default)]
    secret_id: Option<String>,
    tenant_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OidcBody {
    oidc_token: String,
}

fn bad_payload() -> OAuthError {
    OAuthError::invalid_request("Invalid request payload")
}

fn unauthorized(why: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, why)
}

/// generateToken's client authentication failed: 401 with a Basic challenge (RFC 6749
/// §5.2), saying how to authenticate.
fn basic_needed(why: &'static str) -> OAuthError {
    let mut e = unauthorized(why);
    e.basic_challenge = true;
    e
}

const SEND_BASIC: &str = "authenticate the client with HTTP Basic: Authorization: Basic \
     base64(client_id:secret), with the secret that secret_id names when it is given";
const BASIC_OTHER_CLIENT: &str = "the HTTP Basic credentials name another client than client_id";
const BASIC_FAILED: &str = "client authentication failed";
const SEND_BEARER: &str = "send the application's access token (from /credential/jwt) as \
     Authorization: Bearer <token>";
const BEARER_INVALID: &str = "the application's access token is not valid";

fn not_found(what: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::NotFound, what).with_status(404)
}

/// The JSON body of a POST, or 400.
fn json_body<'a, T: Deserialize<'a>>(req: &TokenRequest<'a>) -> Result<T, OAuthError> {
    if *req.method != Method::POST {
        return Err(OAuthError::invalid_request("use POST with a JSON body").with_status(405));
    }
    let json = req.content_type.is_some_and(|c| {
        std::str::from_utf8(c).is_ok_and(|c| {
            c.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        })
    });
    if !json {
        return Err(bad_payload());
    }
    serde_json::from_slice(req.body).map_err(|_| bad_payload())
}

impl TokenService {
    pub(super) async fn tenant_token(
        &self,
        admin: bool,
        oidc: bool,
        req: &TokenRequest<'_>,
    ) -> Result<Reply, OAuthError> {
        let now = unix_now();
        let (client, project, tenant, email) = if oidc {
            self.oidc_user(req, now).await?
        } else {
            self.generate_user(req).await?
        };
        let Some(user) = project.users.get(&email) else {
            return Err(if oidc {
                unauthorized("the token names no user of this project")
            } else {
                not_found("User not found")
            });
        };
        if admin && !user.admin {
            return Err(unauthorized(
                "this user is not an administrator of the tenant",
            ));
        }
        let claims = TenantClaims {
            tenant_id: tenant.id.clone(),
            project_id: project.id.clone(),
            email: email.clone(),
            roles: user.roles.clone(),
            scopes: user.scopes.clone(),
            resources: user.resources.clone(),
            groups: user.groups.clone(),
            token_use: if admin { "admin" } else { "user" },
        };
        let audiences =
            self.registry()
                .permitted_audiences(&client.id, Some(&email), &tenant.audiences);
        if audiences.is_empty() {
            return Err(unauthorized("this tenant's client may call no API"));
        }
        let failed = || OAuthError::new(ErrorCode::ServerError, "Failed to generate token");
        let gid = grant_id(unix_now_ms()).ok_or_else(failed)?;
        let minted = self
            .signer
            .mint(Issue {
                client: &client,
                username: Some(&email),
                scopes: &user.scopes,
                audiences: &audiences,
                format: Format::Jwt,
                grant_id: &gid,
                with_refresh: false,
                now,
                subject: None,
                tenant: Some(&claims),
                cnf: None,
            })
            .map_err(|_| failed())?;
        self.metrics
            .tokens_issued
            .with_label_values(&[
                if admin { "tenant_admin" } else { "tenant_user" },
                if oidc { "oidc" } else { "client_secret" },
            ])
            .inc();
        let body = serde_json::json!({
            "access_token": minted.access_token,
            "expires_in": minted.expires_in.unwrap_or(0),
            "token_type": "Bearer",
        });
        Ok(Reply::no_store(200, body.to_string()))
    }

    /// generateToken: the body names tenant, project, client and user; the caller proves
    /// a secret of that client (the one `secret_id` names, when given).
    async fn generate_user(
        &self,
        req: &TokenRequest<'_>,
    ) -> Result<(Arc<Client>, Arc<Project>, Arc<Tenant>, String), OAuthError> {
        let body: GenerateBody = json_body(req)?;
        for v in [
            &body.client_id,
            &body.email_id,
            &body.project_id,
            &body.tenant_id,
        ] {
            if v.is_empty() {
                return Err(bad_payload());
            }
        }
        let registry = self.registry();
        let tenant = registry
            .tenant(&body.tenant_id)
            .cloned()
            .ok_or_else(|| not_found("Client not found"))?;
        let project = tenant
            .projects
            .get(&body.project_id)
            .filter(|p| p.clients.contains(&body.client_id))
            .cloned()
            .ok_or_else(|| not_found("Client not found"))?;
        let client = registry
            .client(crate::domain::oauth::Family::Credential, &body.client_id)
            .ok_or_else(|| not_found("Client not found"))?;
        let authorization = req
            .authorization
            .map_err(|_| unauthorized("Authorization is sent more than once"))?
            .ok_or_else(|| basic_needed(SEND_BASIC))?;
        let presented =
            client_auth::presented_client(Some(authorization), &super::form::Form::default())
                .map_err(|_| basic_needed(SEND_BASIC))?;
        if client.id != presented.id.as_str() {
            return Err(basic_needed(BASIC_OTHER_CLIENT));
        }
        let secret = presented
            .secret
            .as_ref()
            .map(|s| s.expose().as_str())
            .ok_or_else(|| basic_needed(SEND_BASIC))?;
        let subject = Subject::Client(&presented.id);
        self.limiter
            .check(subject, req.client_ip)
            .map_err(|t| self.throttled(t))?;
        let candidates: Vec<_> = client
            .secrets
            .iter()
            .filter(|(id, _)| {
                body.secret_id.is_none() || id.as_deref() == body.secret_id.as_deref()
            })
            .collect();
        let mut verified = false;
        for (id, hash) in &candidates {
            let cache_id = format!("{}\u{0}{}", client.id, id.as_deref().unwrap_or_default());
            if self
                .secrets
                .verify(&cache_id, secret, Some(hash))
                .await
                .map_err(super::shed)?
            {
                verified = true;
                break;
            }
        }
        if candidates.is_empty() {
            // An unknown secret id costs the same as a wrong secret.
            self.secrets
                .verify(&client.id, secret, None)
                .await
                .map_err(super::shed)?;
        }
        if !verified {
            self.limiter.failed(subject, req.client_ip);
            return Err(basic_needed(BASIC_FAILED));
        }
        Ok((
            client,
            project,
            tenant,
            body.email_id.trim().to_ascii_lowercase(),
        ))
    }

    /// oidcToken: the bearer token names the calling application (a client of a tenant);
    /// the body's token, from one of the tenant's issuers, names the user.
    async fn oidc_user(
        &self,
        req: &TokenRequest<'_>,
        now: i64,
    ) -> Result<(Arc<Client>, Arc<Project>, Arc<Tenant>, String), OAuthError> {
        let body: OidcBody = json_body(req)?;
        if body.oidc_token.is_empty() {
            return Err(bad_payload());
        }
        let authorization = req
            .authorization
            .map_err(|_| unauthorized("Authorization is sent more than once"))?
            .and_then(|a| std::str::from_utf8(a).ok())
            .ok_or_else(|| unauthorized(SEND_BEARER))?;
        let crate::auth::bearer::Presented::Token(app_token) =
            crate::auth::bearer::parse(authorization)
        else {
            return Err(unauthorized(SEND_BEARER));
        };
        let catalog = self.catalog.current();
        let app = self
            .check_token(app_token, now, false)
            .await
            .map_err(|_| unauthorized(BEARER_INVALID))?;
        let registry = &catalog.registry;
        let client = app
            .client_id
            .as_deref()
            .and_then(|id| registry.client(crate::domain::oauth::Family::Credential, id))
            .ok_or_else(|| unauthorized("the caller is not a client of a tenant"))?;
        let Some((tenant_id, project_id)) = client.tenant.clone() else {
            return Err(unauthorized("the caller is not a client of a tenant"));
        };
        let tenant = registry
            .tenant(&tenant_id)
            .cloned()
            .ok_or_else(|| unauthorized("the caller's tenant is no longer configured"))?;
        let project = tenant
            .projects
            .get(&project_id)
            .cloned()
            .ok_or_else(|| unauthorized("the caller's project is no longer configured"))?;
        let iss = crate::idp::peek_issuer(&body.oidc_token)
            .ok_or_else(|| unauthorized("the OIDC token is not valid"))?;
        let issuer = catalog
            .issuers
            .for_iss(&iss)
            .filter(|i| tenant.oidc_issuers.iter().any(|n| n == i.name()))
            .ok_or_else(|| unauthorized("the OIDC token is not from an issuer of this tenant"))?;
        let ext = issuer
            .verify(&body.oidc_token, now)
            .await
            .map_err(|_| unauthorized("the OIDC token is not valid"))?;
        if ext.email_verified == Some(false) {
            return Err(unauthorized("the OIDC token's email is not verified"));
        }
        let email = tenant
            .email_claim
            .string(&ext.claims)
            .map(|e| e.trim().to_ascii_lowercase())
            .ok_or_else(|| unauthorized("the OIDC token names no email"))?;
        if !self.first_exchange(issuer, &ext).await? {
            return Err(unauthorized("this OIDC token was already exchanged"));
        }
        Ok((client, project, tenant, email))
    }
}
