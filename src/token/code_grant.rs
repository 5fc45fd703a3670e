//! `grant_type=authorization_code` (RFC 6749 §4.1.3 with PKCE): a code redeemed once, by
//! the client it was issued to, for an access token, a refresh token and, for `openid`, an
//! ID token (OpenID Connect Core §3.1.3).

use super::authorize::{Code, family_of};
use super::error::{ErrorCode, OAuthError};
use super::form::Form;
use super::grants::Target;
use super::issue::{Issue, Minted};
use super::userinfo::user_claims;
use super::{TokenService, unavailable};
use crate::catalog::registry::Client;
use crate::domain::jose::Algorithm;
use crate::domain::oauth::OIDC_SCOPES;
use crate::keys::TokenTyp;
use crate::store::{Consumed, Ephemeral, Revoke, digest};
use crate::token::authorize::pkce;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::sync::Arc;

fn invalid_grant(d: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, d)
}

/// Whether `record` may be redeemed by `client` at the token endpoint `t`.
fn redeemable_here(record: &Code, client: &Client, t: &Target<'_>) -> Result<(), OAuthError> {
    if record.client_id != client.id || family_of(record.family) != t.family {
        return Err(invalid_grant("the code was not issued to this client"));
    }
    match (&record.api, t.api) {
        (Some(pinned), Some(here)) if *pinned == here.name => Ok(()),
        (Some(_), _) => Err(invalid_grant(
            "the code was issued for another API's token endpoint",
        )),
        (None, None) => Ok(()),
        (None, Some(api)) => {
            // The user's consent covered this API (its audience), and the client may call it.
            if client.apis.contains(&api.name) && record.audiences.contains(&api.audience) {
                Ok(())
            } else {
                Err(OAuthError::new(
                    ErrorCode::UnauthorizedClient,
                    "this client may not get tokens for this API",
                ))
            }
        }
    }
}

/// `at_hash` (OpenID Connect Core §3.1.3.6): the left half of the access token's hash
/// with the ID token's algorithm's hash function, base64url.
fn at_hash(alg: Algorithm, access_token: &str) -> String {
    let d = match alg {
        Algorithm::ES256 | Algorithm::RS256 => {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token.as_bytes())
        }
        Algorithm::EdDSA => {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, access_token.as_bytes())
        }
    };
    let bytes = d.as_ref();
    B64.encode(&bytes[..bytes.len() / 2])
}

impl TokenService {
    /// `grant_type=authorization_code`: one use of a code, by the client it was issued to,
    /// with its redirect URI (when the authorization request named one) and the PKCE
    /// verifier of its challenge. A code of the family's authorization endpoint may be
    /// redeemed at an API's own token endpoint (seed 002), for that API; a code of an
    /// API's authorization endpoint only there. A request at an endpoint the code is not
    /// for is refused before the code is spent: the client can still redeem it where it
    /// belongs.
    pub(super) async fn authorization_code(
        &self,
        client: &Arc<Client>,
        form: &Form,
        t: &Target<'_>,
        now: i64,
    ) -> Result<Minted, OAuthError> {
        let code = form.require("code")?;
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| OAuthError::invalid_request("PKCE is required: send code_verifier"))?;
        if let Some(raw) = self
            .store
            .get_ephemeral(Ephemeral::AuthCode, &digest(code), now)
            .await
            .map_err(unavailable)?
            && let Ok(peeked) = serde_json::from_slice::<Code>(&raw)
        {
            redeemable_here(&peeked, client, t)?;
        }
        let record = match self
            .store
            .consume_ephemeral(Ephemeral::AuthCode, &digest(code), now)
            .await
            .map_err(unavailable)?
        {
            Consumed::Missing => return Err(invalid_grant("unknown or expired code")),
            Consumed::Again(raw) => {
                // RFC 6749 §4.1.2 / RFC 9700 §4.5: a replayed code revokes what it gave.
                if let Ok(rec) = serde_json::from_slice::<Code>(&raw) {
                    let until = self.remember_until(client, now);
                    let what = Revoke::Grant {
                        grant_id: rec.grant_id.clone(),
                        until,
                    };
                    let revocation = what.revocation();
                    self.store.revoke(what).await.map_err(unavailable)?;
                    self.auth.revocations().add(&[revocation]);
                    log::warn!(
                        "an authorization code of client {} was used twice: every token issued from it is revoked",
                        rec.client_id
                    );
                }
                return Err(invalid_grant(
                    "this code was already used; every token issued from it is revoked",
                ));
            }
            Consumed::First(raw) => serde_json::from_slice::<Code>(&raw)
                .map_err(|_| invalid_grant("unknown or expired code"))?,
        };
        // Checked again on the record the store handed over (the peek above may have
        // found nothing: an expired or replayed code).
        redeemable_here(&record, client, t)?;
        match form.get("redirect_uri") {
            Some(r) if r != record.redirect_uri => {
                return Err(invalid_grant(
                    "redirect_uri differs from the authorization request",
                ));
            }
            None if record.redirect_uri_given => {
                return Err(OAuthError::invalid_request(
                    "redirect_uri is required: the authorization request named one",
                ));
            }
            _ => {}
        }
        if !pkce::is_valid_verifier(verifier)
            || !pkce::verifier_matches(verifier, &record.challenge)
        {
            return Err(invalid_grant(
                "the code_verifier does not match the code_challenge",
            ));
        }
        // At an API's token endpoint, the token is that API's: its audience, and the
        // scopes it declares (OpenID Connect's own kept for the ID token).
        let (scopes, audiences) = match (t.api, &record.api) {
            (Some(api), None) => (
                record
                    .scopes
                    .iter()
                    .filter(|s| api.scopes.contains(s) || OIDC_SCOPES.contains(&s.as_str()))
                    .cloned()
                    .collect(),
                vec![api.audience.clone()],
            ),
            _ => (record.scopes.clone(), record.audiences.clone()),
        };
        let mut minted = self.signer.mint(Issue {
            client,
            username: Some(&record.username),
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
        self.persist(&mut minted).await?;
        if record.scopes.iter().any(|s| s == "openid") {
            minted.id_token = Some(self.id_token(client, &record, &minted.access_token, now)?);
        }
        Ok(minted)
    }

    fn id_token(
        &self,
        client: &Client,
        record: &Code,
        access_token: &str,
        now: i64,
    ) -> Result<String, OAuthError> {
        let keys = self.keys.get();
        let signing = keys.signing();
        let scopes: Vec<&str> = record.scopes.iter().map(String::as_str).collect();
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), self.auth.validator().issuer().into());
        claims.insert("sub".into(), record.username.clone().into());
        claims.insert("aud".into(), client.id.as_str().into());
        claims.insert("azp".into(), client.id.as_str().into());
        claims.insert(
            "exp".into(),
            now.saturating_add(client.lifetime.as_secs() as i64).into(),
        );
        claims.insert("iat".into(), now.into());
        claims.insert("auth_time".into(), record.auth_time.into());
        if let Some(n) = &record.nonce {
            claims.insert("nonce".into(), n.clone().into());
        }
        claims.insert(
            "at_hash".into(),
            at_hash(signing.algorithm(), access_token).into(),
        );
        claims.extend(user_claims(client, &record.username, &scopes));
        let json = serde_json::to_vec(&claims)
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "cannot encode the ID token"))?;
        signing
            .sign_typed(&json, TokenTyp::Id)
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "cannot sign the ID token"))
    }
}
