//! Token exchange (RFC 8693): a client trades a token an external issuer signed (an ID
//! token or an access token) for a tollgate token. The subject token is validated in full
//! (signature with that issuer's keys, `exp`, `aud` = the client tollgate is registered as
//! there), exchanged at most once when it has a `jti`, and mapped to a user of the client's
//! pool when it has one; `audience` and `resource` narrow the result.

use super::error::{ErrorCode, OAuthError};
use super::form::Form;
use super::grants::{Target, no_id};
use super::issue::{Issue, Minted, grant_id, grant_scopes};
use super::{TokenService, unavailable};
use crate::catalog::registry::Client;
use crate::domain::claim::ClaimPath;
use crate::domain::clock::unix_now_ms;
use crate::idp::{ExternalIssuer, ExternalToken};
use crate::store::{Ephemeral, digest_bytes};
use std::sync::Arc;

pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

fn invalid_grant(d: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, d)
}

/// The local user an external token names: the issuer's `user_claim`, else
/// `preferred_username`, else `email`.
fn local_name<'t>(claim: Option<&ClaimPath>, t: &'t ExternalToken) -> Option<&'t str> {
    match claim {
        Some(c) => c.string(&t.claims),
        None => t
            .claims
            .get("preferred_username")
            .and_then(|v| v.as_str())
            .or(t.email.as_deref()),
    }
}

impl TokenService {
    /// Whether this is the first exchange of an external token: a token with an id is
    /// remembered (by digest of `iss` and `jti`) until it expires, so it is exchanged once
    /// only, on any node. A token without an id cannot be told apart: it passes.
    pub(super) async fn first_exchange(
        &self,
        issuer: &ExternalIssuer,
        ext: &ExternalToken,
    ) -> Result<bool, OAuthError> {
        let Some(jti) = &ext.jti else {
            return Ok(true);
        };
        let iss = &issuer.settings().issuer;
        let key = digest_bytes(format!("{iss}\u{0}{jti}").as_bytes());
        let leeway = issuer.settings().leeway.as_secs() as i64;
        self.store
            .claim_ephemeral(
                Ephemeral::UsedSubjectToken,
                key,
                Vec::new(),
                ext.exp.saturating_add(leeway),
            )
            .await
            .map_err(unavailable)
    }

    pub(super) async fn token_exchange(
        &self,
        client: &Arc<Client>,
        form: &Form,
        t: &Target<'_>,
        now: i64,
    ) -> Result<Minted, OAuthError> {
        let subject = form.require("subject_token")?;
        let subject_type = form.require("subject_token_type")?;
        if ![ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_TYPE].contains(&subject_type) {
            return Err(OAuthError::invalid_request(
                "subject_token_type must be an access token, an ID token or a JWT",
            ));
        }
        if form.get("actor_token").is_some() {
            return Err(OAuthError::invalid_request(
                "delegation (actor_token) is not supported",
            ));
        }
        if let Some(r) = form.get("requested_token_type")
            && r != ACCESS_TOKEN_TYPE
            && r != JWT_TYPE
        {
            return Err(OAuthError::invalid_request(
                "only access tokens are issued (requested_token_type)",
            ));
        }
        let catalog = self.catalog.current();
        let iss = crate::idp::peek_issuer(subject)
            .ok_or_else(|| invalid_grant("the subject token is not a JWT with an issuer"))?;
        let issuer = catalog
            .issuers
            .for_iss(&iss)
            .filter(|i| client.exchange_issuers.iter().any(|n| n == i.name()))
            .ok_or_else(|| {
                invalid_grant("this client may not exchange tokens of the subject token's issuer")
            })?;
        let ext = issuer.verify(subject, now).await.map_err(|r| {
            invalid_grant(format!("the subject token is not valid ({})", r.label()))
        })?;
        if !self.first_exchange(issuer, &ext).await? {
            return Err(invalid_grant("this subject token was already exchanged"));
        }
        // The local user, when the client has a user pool: the one the token names.
        let registry = &catalog.registry;
        let (username, roles): (Option<&str>, Vec<&str>) = match &client.pool {
            Some(pool) => {
                let claim = registry
                    .issuer_users(issuer.name())
                    .and_then(|u| u.claim.as_ref());
                let name = local_name(claim, &ext)
                    .ok_or_else(|| invalid_grant("the subject token names no local user"))?;
                let user = pool
                    .users
                    .get(name)
                    .ok_or_else(|| invalid_grant("the subject token names no local user"))?;
                (
                    Some(&user.username),
                    user.roles.iter().map(String::as_str).collect(),
                )
            }
            None => (None, Vec::new()),
        };
        // Scopes: what the client may have, that the token or the local user grants.
        let allowed: Vec<String> = client
            .scopes
            .iter()
            .filter(|s| ext.scopes.contains(s) || roles.contains(&s.as_str()))
            .filter(|s| t.api.is_none_or(|api| api.scopes.contains(s)))
            .cloned()
            .collect();
        let scopes = grant_scopes(form.get("scope"), &allowed)?;
        let audiences = match t.api {
            Some(api) => {
                if !client.apis.contains(&api.name) {
                    return Err(OAuthError::new(
                        ErrorCode::UnauthorizedClient,
                        "this credential may not call this API",
                    ));
                }
                vec![api.audience.clone()]
            }
            None => registry.permitted_audiences(&client.id, username, &client.audiences),
        };
        let requested: Vec<&str> = ["audience", "resource"]
            .iter()
            .filter_map(|k| form.get(k))
            .collect();
        let audiences: Vec<String> = if requested.is_empty() {
            audiences
        } else {
            let narrowed: Vec<String> = audiences
                .into_iter()
                .filter(|a| {
                    requested
                        .iter()
                        .any(|r| r == a || registry.api(r).is_some_and(|api| &api.audience == a))
                })
                .collect();
            if narrowed.len() != requested.len() {
                return Err(OAuthError::new(
                    ErrorCode::InvalidTarget,
                    "the audience or resource is not one this client may have",
                ));
            }
            narrowed
        };
        if audiences.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "this client may call no API",
            ));
        }
        let gid = grant_id(unix_now_ms()).ok_or_else(no_id)?;
        let mut minted = self.signer.mint(Issue {
            client,
            username,
            scopes: &scopes,
            audiences: &audiences,
            format: t.format,
            grant_id: &gid,
            with_refresh: false,
            now,
            subject: match username {
                Some(_) => None,
                None => Some(&ext.subject),
            },
            tenant: None,
            cnf: t.cnf,
        })?;
        self.persist(&mut minted).await?;
        minted.issued_token_type = Some(ACCESS_TOKEN_TYPE);
        Ok(minted)
    }
}
