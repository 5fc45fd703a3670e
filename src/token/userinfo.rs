//! `GET|POST /userinfo` (OpenID Connect Core §5.3): the claims of the user a bearer access
//! token with `openid` names, as its scopes allow; refusals as RFC 6750 says.

use super::{Reply, TokenRequest, TokenService};
use crate::auth::refusal::Refusal;
use crate::catalog::registry::Client;
use crate::domain::clock::unix_now;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method};

/// The user claims a scope set shows (OpenID Connect Core §5.4).
pub(super) fn user_claims(
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
        let principal = match self.check_token(token, now, false).await {
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
        let mut body = user_claims(&client, username, &scopes);
        body.insert("sub".into(), username.into());
        let mut r = Reply::no_store(200, serde_json::Value::Object(body).to_string());
        r.headers.retain(|(n, _)| *n != CONTENT_TYPE);
        r.headers
            .push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        r
    }
}
