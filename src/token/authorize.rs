//! The authorization endpoint and the pages behind it (RFC 6749 §4.1, RFC 7636, RFC 9207,
//! RFC 9700): the request is checked (client, exact redirect URI, `response_type=code`,
//! PKCE S256), bound to the browser by a single-use flow id and a cookie, the user signs in
//! (or a session vouches for them), consents, and is sent back with a single-use code, the
//! `state` and the `iss`.
//!
//! An unknown client or redirect URI gets an error page, never a redirect; every later
//! error goes back to the client's redirect URI with `error`, `state` and `iss`.
//!
//! Here: the endpoint and the flow it stores. The pages' answers are in `login`,
//! `consent` and `logout`; what they draw is `pages`; cookies, PKCE and redirect URIs have
//! a file each. The code is redeemed at the token endpoint (`token::code_grant`).

use super::error::{ErrorCode, OAuthError};
use super::form::Form;
use super::issue::{grant_scopes, random_id};
use super::{Reply, TokenRequest, TokenService};
use crate::catalog::registry::Client;
use crate::domain::clock::unix_now;
use crate::domain::ids::{ClientId, GrantId};
use crate::domain::net::is_local_http;
use crate::domain::oauth::{Family, GrantType, OIDC_SCOPES};
use crate::store::{Ephemeral, digest};
use http::HeaderValue;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How long a browser has from `/authorize` to the end of the flow.
const FLOW_TTL: i64 = 600;
/// Authorization codes live 60 s (RFC 6749 §4.1.2 recommends at most 10 minutes).
pub(super) const CODE_TTL: i64 = 60;

const LOGIN_PATH: &str = "/oauth2/v2/login";
/// What the browser is told when the store cannot keep a flow.
const STORE_UNAVAILABLE: &str = "the token store is unavailable; try again";
const CONSENT_PATH: &str = "/oauth2/v2/consent";

/// Records stored before a field existed named their redirect URI.
fn named() -> bool {
    true
}

fn family_code(f: Family) -> u8 {
    match f {
        Family::Auth => 1,
        Family::Credential => 2,
    }
}

pub(super) fn family_of(code: u8) -> Family {
    if code == 1 {
        Family::Auth
    } else {
        Family::Credential
    }
}

/// A flow between `/authorize` and the redirect back, as stored.
#[derive(Serialize, Deserialize)]
struct Flow {
    family: u8,
    client_id: ClientId,
    redirect_uri: String,
    /// Whether the request named it (RFC 6749 §4.1.3: then the token request must too).
    #[serde(default = "named")]
    redirect_uri_given: bool,
    state: Option<String>,
    challenge: String,
    scope: Option<String>,
    nonce: Option<String>,
    api: Option<String>,
    max_age: Option<i64>,
    /// `prompt=login`: a session does not spare the password.
    force_login: bool,
    /// `prompt=consent`: a remembered consent does not spare the screen.
    force_consent: bool,
    /// Hex SHA-256 of the flow cookie: the browser this flow belongs to.
    binding: String,
    /// Set once the user is known.
    user: Option<String>,
    auth_time: Option<i64>,
}

/// A browser session, as stored under the digest of its cookie.
#[derive(Serialize, Deserialize)]
pub(super) struct Session {
    pub pool: String,
    pub username: String,
    pub auth_time: i64,
    /// Clients this user consented to, with the scopes.
    #[serde(default)]
    pub consents: Vec<(ClientId, Vec<String>)>,
}

/// An authorization code's record.
#[derive(Serialize, Deserialize)]
pub(super) struct Code {
    pub family: u8,
    pub client_id: ClientId,
    pub redirect_uri: String,
    /// Whether the authorization request named it.
    #[serde(default = "named")]
    pub redirect_uri_given: bool,
    pub challenge: String,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub username: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    /// The grant every token issued from the code belongs to: a replay revokes it.
    pub grant_id: GrantId,
    pub api: Option<String>,
}

mod answers;
mod consent;
pub mod cookies;
mod login;
mod logout;
pub mod pages;
pub mod pkce;
pub mod redirect;
use answers::{Back, csrf, eq, error_page, hex, page, page_params, random_secret};

impl TokenService {
    fn issuer_str(&self) -> String {
        self.auth.validator().issuer().to_string()
    }

    /// Whether the browser may run the flow here: over TLS, or against a plain-http
    /// loopback issuer (a developer's machine), where `Secure` cookies cannot be set.
    fn browser_ok(&self, req: &TokenRequest<'_>) -> bool {
        req.tls
            || reqwest::Url::parse(self.auth.validator().issuer()).is_ok_and(|u| is_local_http(&u))
    }

    /// A form POST must come from this gateway's own pages (CSRF defence beside the
    /// token). `Origin` says so when the browser sends a real one; under the pages'
    /// `Referrer-Policy: no-referrer` a browser sends `Origin: null` for a same-origin form
    /// (Fetch §3.1 "serializing a request origin"), and then `Sec-Fetch-Site` tells.
    /// A client that sends neither (not a browser) still needs the cookie and the token.
    fn origin_ok(&self, req: &TokenRequest<'_>) -> bool {
        if let Some(origin) = req.origin.filter(|o| *o != b"null") {
            let Ok(issuer) = reqwest::Url::parse(self.auth.validator().issuer()) else {
                return false;
            };
            return origin == issuer.origin().ascii_serialization().as_bytes();
        }
        match req.fetch_site {
            Some(site) => site == b"same-origin",
            // `Origin: null` with no fetch metadata: an opaque origin (a sandboxed frame,
            // a data: URL), never this gateway's pages.
            None => req.origin.is_none(),
        }
    }

    pub(super) async fn authorize(
        &self,
        family: Family,
        api: Option<&str>,
        req: &TokenRequest<'_>,
    ) -> Reply {
        let form = match page_params(req, "Cannot sign in", "Use GET (or a form POST).") {
            Ok(f) => f,
            Err(reply) => return reply,
        };
        if !self.browser_ok(req) {
            return error_page(
                400,
                "Cannot sign in",
                "Signing in needs HTTPS: open this page over https.",
            );
        }
        let registry = self.registry();
        let client = match form
            .get("client_id")
            .and_then(|id| registry.client(family, id))
            .filter(|c| c.grant_types.contains(&GrantType::AuthorizationCode))
        {
            Some(c) => c.clone(),
            None => {
                return error_page(
                    400,
                    "Unknown application",
                    "The application that sent you here is not registered.",
                );
            }
        };
        // RFC 6749 §3.1.2.3: with exactly one registered, the request may leave it out;
        // OpenID Connect requests must name it (Core §3.1.2.1).
        let openid = form
            .get("scope")
            .is_some_and(|s| s.split(' ').any(|x| x == "openid"));
        let given = form.get("redirect_uri");
        let redirect_uri = match (given, client.browser.redirect_uris.as_slice()) {
            (Some(r), registered) if redirect::matches(registered, r) => r,
            (None, [only]) if !openid => only.as_str(),
            _ => {
                return error_page(
                    400,
                    "Unknown return address",
                    "The application did not give a return address registered for it.",
                );
            }
        };
        let issuer = self.issuer_str();
        let back = Back {
            redirect_uri,
            state: form.get("state"),
            issuer: &issuer,
        };
        if form.get("response_type") != Some("code") {
            return back.error(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code",
            );
        }
        if form.get("response_mode").is_some_and(|m| m != "query") {
            return back.error(ErrorCode::InvalidRequest, "only response_mode=query");
        }
        if form.get("request").is_some() || form.get("request_uri").is_some() {
            return back.error(
                ErrorCode::RequestNotSupported,
                "request objects are not supported",
            );
        }
        let Some(challenge) = form.get("code_challenge") else {
            return back.error(
                ErrorCode::InvalidRequest,
                "PKCE is required: send code_challenge",
            );
        };
        if form.get("code_challenge_method") != Some("S256")
            || !pkce::is_valid_s256_challenge(challenge)
        {
            return back.error(
                ErrorCode::InvalidRequest,
                "code_challenge_method must be S256, with a 43-character challenge",
            );
        }
        if let Some(s) = form.get("scope")
            && s.split(' ')
                .any(|t| !t.is_empty() && !crate::domain::scope::is_valid_scope_token(t))
        {
            return back.error(ErrorCode::InvalidScope, "the scope parameter is malformed");
        }
        let prompts: Vec<&str> = form
            .get("prompt")
            .map(|p| p.split(' ').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        if prompts
            .iter()
            .any(|p| !["none", "login", "consent", "select_account"].contains(p))
            || (prompts.contains(&"none") && prompts.len() > 1)
        {
            return back.error(
                ErrorCode::InvalidRequest,
                "unknown or conflicting prompt values",
            );
        }
        let max_age = match form.get("max_age").map(str::parse::<i64>) {
            None => None,
            Some(Ok(a)) if a >= 0 => Some(a),
            Some(_) => {
                return back.error(
                    ErrorCode::InvalidRequest,
                    "max_age must be a number of seconds",
                );
            }
        };
        if let Some(a) = api
            && !client.apis.contains(a)
        {
            return back.error(
                ErrorCode::UnauthorizedClient,
                "this client may not call this API",
            );
        }
        let now = unix_now();
        // The session this browser already has, when it may stand in for the password.
        let session = self.session(req, &client, now).await.filter(|(_, s)| {
            !prompts.contains(&"login") && max_age.is_none_or(|a| now - s.auth_time <= a)
        });
        if session.is_none() && prompts.contains(&"none") {
            return back.error(ErrorCode::LoginRequired, "the user is not signed in");
        }
        // The browser binding: the flow cookie this browser holds (reused, so that flows
        // in two tabs both work), or a new one.
        let secret = match cookies::get(req.cookie, cookies::FLOW, req.tls) {
            Some(s) if s.len() == 43 => s.to_string(),
            _ => match random_secret() {
                Some(s) => s,
                None => return back.error(ErrorCode::ServerError, "no randomness available"),
            },
        };
        let Some(flow_id) = random_id() else {
            return back.error(ErrorCode::ServerError, "no randomness available");
        };
        let mut flow = Flow {
            family: family_code(family),
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.to_string(),
            redirect_uri_given: given.is_some(),
            state: form.get("state").map(str::to_string),
            challenge: challenge.to_string(),
            scope: form.get("scope").map(str::to_string),
            nonce: form.get("nonce").map(str::to_string),
            api: api.map(str::to_string),
            max_age,
            force_login: prompts.contains(&"login"),
            force_consent: prompts.contains(&"consent"),
            binding: hex(&digest(&secret)),
            user: None,
            auth_time: None,
        };
        let flow_cookie: Vec<HeaderValue> =
            cookies::set(cookies::FLOW, &secret, Some(FLOW_TTL as u64), req.tls)
                .into_iter()
                .collect();
        if let Some((_, s)) = &session {
            flow.user = Some(s.username.clone());
            flow.auth_time = Some(s.auth_time);
            let consented = match self.scopes_for(&client, &flow) {
                Ok(scopes) => self.consented(&client, s, &scopes) && !flow.force_consent,
                Err(e) => return back.error(e.code, &e.description),
            };
            if consented {
                return self.finish(flow_id, flow, Vec::new(), &registry).await;
            }
            if prompts.contains(&"none") {
                return back.error(ErrorCode::ConsentRequired, "the user has not consented yet");
            }
        }
        if !self.save_flow(&flow_id, &flow, now).await {
            return back.error(ErrorCode::TemporarilyUnavailable, STORE_UNAVAILABLE);
        }
        match &flow.user {
            Some(user) => self.consent_page(&flow_id, &flow, &client, user, &secret, flow_cookie),
            None => page(
                200,
                pages::login(&pages::LoginPage {
                    action: LOGIN_PATH,
                    flow: &flow_id,
                    csrf: &csrf(&secret, &flow_id),
                    client_name: &client.browser.name,
                    username: "",
                    error: None,
                }),
                flow_cookie,
            ),
        }
    }

    /// Keep the flow for its next step; false when the store cannot.
    async fn save_flow(&self, id: &str, flow: &Flow, now: i64) -> bool {
        let Ok(value) = serde_json::to_vec(flow) else {
            return false;
        };
        self.store
            .put_ephemeral(Ephemeral::LoginFlow, digest(id), value, now + FLOW_TTL)
            .await
            .is_ok()
    }

    /// The signed-in session of this browser, for a user of the client's pool.
    async fn session(
        &self,
        req: &TokenRequest<'_>,
        client: &Client,
        now: i64,
    ) -> Option<(String, Session)> {
        let id = cookies::get(req.cookie, cookies::SESSION, req.tls)?;
        let pool = client.pool.as_ref()?;
        let raw = self
            .store
            .get_ephemeral(Ephemeral::Session, &digest(id), now)
            .await
            .ok()??;
        let s: Session = serde_json::from_slice(&raw).ok()?;
        (s.pool == pool.name && pool.users.contains_key(&s.username)).then(|| (id.to_string(), s))
    }

    /// The scopes the flow would grant its user: the requested ones among the user's roles
    /// and OpenID Connect's own (all the roles when none are requested).
    fn scopes_for(&self, client: &Client, flow: &Flow) -> Result<Vec<String>, OAuthError> {
        let user = flow
            .user
            .as_deref()
            .and_then(|u| client.pool.as_ref()?.users.get(u))
            .ok_or_else(|| OAuthError::new(super::error::ErrorCode::InvalidRequest, "no user"))?;
        let mut allowed = user.roles.clone();
        allowed.extend(OIDC_SCOPES.iter().map(|s| s.to_string()));
        match flow.scope.as_deref() {
            None => Ok(user.roles.clone()),
            some => grant_scopes(some, &allowed),
        }
    }

    /// The flow of a form post (login or consent), with its checks: the flow exists, the
    /// browser holds its cookie, the CSRF token matches, the origin is this gateway.
    async fn posted_flow(
        &self,
        req: &TokenRequest<'_>,
        form: &Form,
        now: i64,
        with_csrf: bool,
    ) -> Result<(String, Flow, String, Arc<Client>), Reply> {
        let gone = || {
            error_page(
                400,
                "This sign-in has expired",
                "Go back to the application and start again.",
            )
        };
        let forbidden = || {
            error_page(
                403,
                "Cannot continue",
                "This page was not opened by this browser, or it has expired. Start again from the application.",
            )
        };
        let flow_id = form.get("flow").ok_or_else(gone)?.to_string();
        let raw = self
            .store
            .get_ephemeral(Ephemeral::LoginFlow, &digest(&flow_id), now)
            .await
            .map_err(|_| error_page(503, "Try again", "The token store is unavailable."))?
            .ok_or_else(gone)?;
        let flow: Flow = serde_json::from_slice(&raw).map_err(|_| gone())?;
        let secret = cookies::get(req.cookie, cookies::FLOW, req.tls)
            .ok_or_else(forbidden)?
            .to_string();
        if !eq(&hex(&digest(&secret)), &flow.binding) {
            return Err(forbidden());
        }
        if with_csrf
            && !form
                .get("csrf")
                .is_some_and(|c| eq(c, &csrf(&secret, &flow_id)))
        {
            return Err(forbidden());
        }
        if !self.origin_ok(req) {
            return Err(forbidden());
        }
        let client = self
            .registry()
            .client(family_of(flow.family), &flow.client_id)
            .ok_or_else(gone)?;
        Ok((flow_id, flow, secret, client))
    }
}
