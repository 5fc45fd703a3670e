//! The authorization code grant (RFC 6749 §4.1.3 with PKCE), the OpenID Connect parts of a
//! minimal provider (ID tokens, `/userinfo`, the configuration document) and CORS for
//! browser apps on the token, revoke and userinfo endpoints.

use super::authorize::{Code, family_of};
use super::error::{ErrorCode, OAuthError};
use super::form::Form;
use super::grants::Target;
use super::issue::{Issue, Minted};
use super::{Endpoint, Reply, TokenRequest, TokenService, unavailable};
use crate::auth::refusal::Refusal;
use crate::catalog::registry::Client;
use crate::domain::clock::unix_now;
use crate::domain::jose::Algorithm;
use crate::keys::TokenTyp;
use crate::store::{Consumed, Ephemeral, Revoke, digest};
use crate::token::authorize::pkce;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::header::{CONTENT_TYPE, VARY};
use http::{HeaderName, HeaderValue, Method};
use std::sync::Arc;

fn invalid_grant(d: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, d)
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

/// The user claims a scope set shows (OpenID Connect Core §5.4).
fn user_claims(
    client: &Client,
    username: &str,
    scopes: &[&str],
) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    let user = client.pool.as_ref().and_then(|p| p.users.get(username));
    if scopes.contains(&"profile") {
        out.insert("preferred_username".into(), username.into());
        if let Some(name) = user.and_then(|u| u.name.clone()) {
            out.insert("name".into(), name.into());
        }
    }
    if scopes.contains(&"email")
        && let Some(email) = user.and_then(|u| u.email.clone())
    {
        out.insert("email".into(), email.into());
        // The operator wrote it in the user record: it is as verified as the record.
        out.insert("email_verified".into(), true.into());
    }
    out
}

impl TokenService {
    /// `grant_type=authorization_code`: one use of a code, by the client it was issued to,
    /// with its redirect URI and the PKCE verifier of its challenge.
    pub(super) async fn authorization_code(
        &self,
        client: &Arc<Client>,
        form: &Form,
        t: &Target<'_>,
        now: i64,
    ) -> Result<Minted, OAuthError> {
        let code = form.require("code")?;
        let redirect_uri = form.require("redirect_uri")?;
        let verifier = form
            .get("code_verifier")
            .ok_or_else(|| OAuthError::invalid_request("PKCE is required: send code_verifier"))?;
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
        if record.client_id != client.id || family_of(record.family) != t.family {
            return Err(invalid_grant("the code was not issued to this client"));
        }
        if record.redirect_uri != redirect_uri {
            return Err(invalid_grant(
                "redirect_uri differs from the authorization request",
            ));
        }
        if !pkce::is_valid_verifier(verifier)
            || !pkce::verifier_matches(verifier, &record.challenge)
        {
            return Err(invalid_grant(
                "the code_verifier does not match the code_challenge",
            ));
        }
        if record.api.as_deref() != t.api.map(|a| a.name.as_str()) {
            return Err(invalid_grant(
                "the code was issued for another token endpoint",
            ));
        }
        let mut minted = self.signer.mint(Issue {
            client,
            username: Some(&record.username),
            scopes: &record.scopes,
            audiences: &record.audiences,
            format: t.format,
            grant_id: &record.grant_id,
            with_refresh: true,
            now,
            subject: None,
            tenant: None,
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
        claims.insert("aud".into(), client.id.clone().into());
        claims.insert("azp".into(), client.id.clone().into());
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

    /// `GET|POST /userinfo` with a bearer access token that has `openid`.
    pub(super) async fn userinfo(&self, req: &TokenRequest<'_>) -> Reply {
        let challenge = |status, code, text: &'static str| {
            Reply::from(Refusal::bearer_error(status, code, text))
        };
        if *req.method != Method::GET && *req.method != Method::POST {
            return challenge(405, "invalid_request", "use GET or POST");
        }
        let token = match req
            .authorization
            .ok()
            .flatten()
            .and_then(|a| std::str::from_utf8(a).ok())
            .map(crate::auth::bearer::parse)
        {
            Some(crate::auth::bearer::Presented::Token(t)) => t,
            _ => return Reply::from(Refusal::bearer_required()),
        };
        let now = unix_now();
        let issuers = crate::idp::Issuers::none();
        let principal = match self.auth.authenticate(token, now, &issuers).await.0 {
            Ok(p) => p,
            Err(crate::domain::outcome::Outcome::StoreUnavailable) => {
                return challenge(
                    503,
                    "temporarily_unavailable",
                    "the token store is unavailable",
                );
            }
            Err(_) => return challenge(401, "invalid_token", "the access token is not valid"),
        };
        if !principal.scopes.contains("openid") {
            return challenge(403, "insufficient_scope", "the access token lacks openid");
        }
        let registry = self.registry();
        let (Some(username), Some(client)) = (
            principal.username.as_deref(),
            principal
                .client_id
                .as_deref()
                .and_then(|c| registry.any_client(c)),
        ) else {
            return challenge(401, "invalid_token", "the access token names no user");
        };
        let scopes: Vec<&str> = principal.scopes.iter().collect();
        let mut body = user_claims(client, username, &scopes);
        body.insert("sub".into(), username.into());
        let mut r = Reply::no_store(200, serde_json::Value::Object(body).to_string());
        r.headers.retain(|(n, _)| *n != CONTENT_TYPE);
        r.headers
            .push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        r
    }

    /// A CORS preflight (no client id: answered from every client's origins).
    pub(super) fn preflight(&self, endpoint: &Endpoint, req: &TokenRequest<'_>) -> Reply {
        let mut r = Reply {
            status: 204,
            headers: vec![(VARY, HeaderValue::from_static("Origin"))],
            body: Default::default(),
        };
        let Some(origin) = req.origin.and_then(|o| std::str::from_utf8(o).ok()) else {
            return r;
        };
        if !self.registry().any_client_allows_origin(origin) {
            return r;
        }
        let methods = match endpoint {
            Endpoint::UserInfo => "GET, POST",
            _ => "POST",
        };
        let pairs: [(&str, &str); 4] = [
            ("access-control-allow-origin", origin),
            ("access-control-allow-methods", methods),
            (
                "access-control-allow-headers",
                "Authorization, Content-Type",
            ),
            ("access-control-max-age", "600"),
        ];
        for (n, v) in pairs {
            if let Ok(v) = HeaderValue::from_str(v) {
                r.headers.push((HeaderName::from_static(n), v));
            }
        }
        r
    }

    /// Let a browser app read the answer when its origin is one its client allows.
    pub(super) fn allow_origin(
        &self,
        endpoint: &Endpoint,
        req: &TokenRequest<'_>,
        reply: &mut Reply,
    ) {
        let Some(origin) = req.origin.and_then(|o| std::str::from_utf8(o).ok()) else {
            return;
        };
        let registry = self.registry();
        let client_id = match endpoint {
            Endpoint::UserInfo => req
                .authorization
                .ok()
                .flatten()
                .and_then(|a| std::str::from_utf8(a).ok())
                .and_then(|a| match crate::auth::bearer::parse(a) {
                    crate::auth::bearer::Presented::Token(t) => {
                        self.auth.validator().signed_claims(t).ok()?.client_id
                    }
                    _ => None,
                }),
            _ => {
                let form = Form::parse(req.body).unwrap_or_default();
                super::client_auth::presented_client(req.authorization.ok().flatten(), &form)
                    .ok()
                    .map(|p| p.id)
            }
        };
        let allowed = match client_id.and_then(|id| registry.any_client(&id).cloned()) {
            Some(c) => c.browser.allowed_origins.iter().any(|o| o == origin),
            // An answer before the client is known (an error): any client's origin.
            None => registry.any_client_allows_origin(origin),
        };
        reply
            .headers
            .push((VARY, HeaderValue::from_static("Origin")));
        if allowed && let Ok(v) = HeaderValue::from_str(origin) {
            reply
                .headers
                .push((HeaderName::from_static("access-control-allow-origin"), v));
        }
    }
}
