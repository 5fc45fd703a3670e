//! `/{auth,credential}/introspect` (RFC 7662), for JWTs, opaque access tokens and refresh
//! tokens alike.

use super::error::{ErrorCode, OAuthError};
use super::{Reply, SecretRule, TokenRequest, TokenService, Via, method_not_allowed, unavailable};
use crate::auth::Principal;
use crate::catalog::registry::Client;
use crate::domain::clock::unix_now;
use crate::domain::ids::{ClientId, Jti};
use crate::domain::oauth::Family;
use crate::domain::oauth::TokenKind;
use crate::domain::outcome::Outcome;
use crate::opaque;
use crate::store::{TokenRecord, digest};
use serde_json::{Value, json};

/// What introspection says about a live token.
struct View {
    refresh: bool,
    client_id: ClientId,
    username: Option<String>,
    sub: String,
    scope: String,
    audiences: Vec<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    jti: Option<Jti>,
    cnf: Option<crate::domain::cnf::Confirmation>,
}

impl View {
    fn from_principal(p: &Principal) -> Option<Self> {
        Some(Self {
            refresh: false,
            client_id: ClientId::new(p.client_id.as_deref()?),
            username: p.username.as_deref().map(str::to_string),
            sub: p.sub.as_deref().unwrap_or_default().to_string(),
            scope: p.scopes.to_space_separated(),
            audiences: p.audiences.iter().map(|a| a.to_string()).collect(),
            exp: (p.exp != i64::MAX).then_some(p.exp),
            iat: p.iat,
            jti: p.jti.as_deref().map(Jti::new),
            cnf: p.cnf,
        })
    }

    fn from_refresh(r: TokenRecord) -> Self {
        Self {
            refresh: true,
            sub: r
                .username
                .clone()
                .unwrap_or_else(|| r.client_id.to_string()),
            client_id: r.client_id,
            username: r.username,
            scope: r.scope,
            audiences: r.audiences,
            exp: r.expires_at,
            iat: Some(r.issued_at),
            jti: Some(r.jti),
            cnf: r.cnf,
        }
    }
}

impl TokenService {
    /// A form POST of an introspection or revocation, and the client it presents.
    pub(super) fn form_request(
        req: &TokenRequest<'_>,
    ) -> Result<(super::form::Form, super::client_auth::PresentedClient), OAuthError> {
        let (form, via) = Self::params(req)?;
        if via == Via::Url {
            return Err(method_not_allowed());
        }
        let presented = Self::presented(req, &form)?;
        Ok((form, presented))
    }

    /// RFC 7662: the caller authenticates; anything not live, or not the caller's to see,
    /// is `{"active": false}`.
    pub(super) async fn introspect(
        &self,
        family: Family,
        req: &TokenRequest<'_>,
    ) -> Result<Reply, OAuthError> {
        let (form, presented) = Self::form_request(req)?;
        let caller = self
            .authenticate(family, &presented, SecretRule::Required, req)
            .await?;
        let token = form.require("token")?;
        let now = unix_now();
        let view = self
            .view(token, now)
            .await?
            .filter(|v| self.visible_to(&caller, v))
            .filter(|v| {
                !self
                    .registry()
                    .permitted_audiences(&v.client_id, v.username.as_deref(), &v.audiences)
                    .is_empty()
            });
        let body = match view {
            None => json!({ "active": false }),
            Some(v) => self.introspection_body(v),
        };
        Ok(Reply::no_store(200, body.to_string()))
    }

    /// The caller may see tokens issued to it, and tokens for the APIs it may call.
    fn visible_to(&self, caller: &Client, v: &View) -> bool {
        v.client_id == caller.id || v.audiences.iter().any(|a| caller.audiences.contains(a))
    }

    fn introspection_body(&self, v: View) -> Value {
        let mut body = json!({
            "active": true,
            "scope": v.scope,
            "client_id": v.client_id,
            "sub": v.sub,
            "iss": self.issuer(),
            // RFC 9449 §6.2: a DPoP-bound access token introspects as `DPoP` with its
            // `cnf`; a certificate-bound one keeps `Bearer` (RFC 8705 §3.2).
            "token_type": match (v.refresh, v.cnf) {
                (true, _) => "refresh_token",
                (false, Some(crate::domain::cnf::Confirmation::Jkt(_))) => "DPoP",
                (false, _) => "Bearer",
            },
            "aud": match v.audiences.as_slice() {
                [one] => Value::String(one.clone()),
                many => json!(many),
            },
        });
        if let Some(u) = v.username {
            body["username"] = u.into();
        }
        if let Some(e) = v.exp {
            body["exp"] = e.into();
        }
        if let Some(i) = v.iat {
            body["iat"] = i.into();
        }
        if let Some(j) = v.jti {
            body["jti"] = j.as_str().into();
        }
        if let Some(c) = v.cnf {
            body["cnf"] = c.to_json();
        }
        body
    }

    /// What a live token of this gateway is; `None` for anything else.
    async fn view(&self, token: &str, now: i64) -> Result<Option<View>, OAuthError> {
        if opaque::kind_of(token) == Some(opaque::Kind::Refresh) {
            let record = self.store.get(&digest(token)).await.map_err(unavailable)?;
            return Ok(record
                .filter(|r| r.kind == TokenKind::Refresh && r.is_live(now) && r.used_at.is_none())
                .filter(|r| !self.auth.revocations().is_revoked(r.revocation_subject()))
                .map(View::from_refresh));
        }
        match self.check_token(token, now, true).await {
            Ok(p) => Ok(View::from_principal(&p)),
            Err(Outcome::StoreUnavailable) => Err(OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the token store is unavailable; try again",
            )),
            Err(_) => Ok(None),
        }
    }

    fn issuer(&self) -> &str {
        self.auth.validator().issuer()
    }
}
