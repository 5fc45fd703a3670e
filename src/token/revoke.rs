//! `/{auth,credential}/revoke` (RFC 7009): a client revokes its own tokens; a refresh token
//! takes its whole grant with it (§2.1).

use super::error::{ErrorCode, OAuthError};
use super::{Reply, SecretRule, TokenRequest, TokenService, unavailable};
use crate::catalog::registry::Client;
use crate::domain::clock::unix_now;
use crate::domain::ids::Jti;
use crate::domain::oauth::{Family, TokenKind};
use crate::opaque;
use crate::store::{Revoke, digest};
use std::sync::Arc;

fn unauthorized_client() -> OAuthError {
    OAuthError::new(
        ErrorCode::UnauthorizedClient,
        "this token was not issued to this client",
    )
}

impl TokenService {
    /// RFC 7009: 200 whether or not the token was known; a client may revoke only its own
    /// tokens. Revoking a refresh token revokes its whole grant (§2.1).
    pub(super) async fn revoke(
        &self,
        family: Family,
        req: &TokenRequest<'_>,
    ) -> Result<Reply, OAuthError> {
        let (form, presented) = Self::form_request(req)?;
        let client = self
            .authenticate(family, &presented, SecretRule::PublicAllowed, req)
            .await?;
        let token = form.require("token")?;
        // token_type_hint only says where to look first; every kind is looked up anyway.
        let now = unix_now();
        let Some(what) = self.revocation_for(&client, token, now).await? else {
            return Ok(Reply::empty());
        };
        let revocation = what.revocation();
        self.store.revoke(what).await.map_err(unavailable)?;
        self.auth.revocations().add(&[revocation]);
        let cache = self.auth.cache();
        cache.invalidate(&cache.key(token));
        Ok(Reply::empty())
    }

    /// What revoking `token` means, if it is a token of this gateway.
    async fn revocation_for(
        &self,
        client: &Arc<Client>,
        token: &str,
        now: i64,
    ) -> Result<Option<Revoke>, OAuthError> {
        if opaque::kind_of(token).is_some() {
            let d = digest(token);
            let Some(r) = self.store.get(&d).await.map_err(unavailable)? else {
                return Ok(None);
            };
            if r.client_id != client.id {
                return Err(unauthorized_client());
            }
            return Ok(Some(match r.kind {
                TokenKind::Access => Revoke::Token {
                    jti: r.jti,
                    digest: Some(d),
                    until: r.expires_at,
                },
                TokenKind::Refresh => Revoke::Grant {
                    grant_id: r.grant_id,
                    until: self.remember_until(client, now),
                },
            }));
        }
        let Ok(claims) = self.auth.validator().signed_claims(token) else {
            return Ok(None);
        };
        if claims.client_id.as_deref() != Some(client.id.as_str()) {
            return Err(unauthorized_client());
        }
        let leeway = self.auth.validator().leeway();
        Ok(claims.jti.map(|jti| Revoke::Token {
            jti: Jti::new(jti),
            digest: None,
            until: claims.exp.map(|e| e.saturating_add(leeway)),
        }))
    }
}
