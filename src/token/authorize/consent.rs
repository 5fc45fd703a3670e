//! `/oauth2/v2/consent`: the consent screen and the user's answer, and the end of the flow
//! (the single-use code sent back to the client's redirect URI).

use super::answers::{Back, csrf, error_page, page, page_params, random_secret};
use super::{CODE_TTL, CONSENT_PATH, Code, Flow, Session, cookies, family_of, pages};
use crate::catalog::registry::{Client, Registry};
use crate::domain::clock::{unix_now, unix_now_ms};
use crate::domain::ids::GrantId;
use crate::store::{Consumed, Ephemeral, digest};
use crate::token::error::ErrorCode;
use crate::token::issue::grant_id;
use crate::token::{Reply, TokenRequest, TokenService};
use http::{HeaderValue, Method};

impl TokenService {
    pub(super) fn consented(&self, client: &Client, s: &Session, scopes: &[String]) -> bool {
        client.browser.skip_consent
            || s.consents
                .iter()
                .any(|(c, granted)| *c == client.id && scopes.iter().all(|x| granted.contains(x)))
    }

    pub(super) fn consent_page(
        &self,
        flow_id: &str,
        flow: &Flow,
        client: &Client,
        user: &str,
        secret: &str,
        cookies: Vec<HeaderValue>,
    ) -> Reply {
        let scopes = self.scopes_for(client, flow).unwrap_or_default();
        let lines: Vec<pages::ScopeLine> = scopes
            .iter()
            .map(|s| pages::ScopeLine {
                name: s,
                description: match s.as_str() {
                    "openid" => Some("Sign you in to the application"),
                    "profile" => Some("Your name and username"),
                    "email" => Some("Your email address"),
                    _ => None,
                },
            })
            .collect();
        page(
            200,
            pages::consent(&pages::ConsentPage {
                action: CONSENT_PATH,
                flow: flow_id,
                csrf: &csrf(secret, flow_id),
                client_name: &client.browser.name,
                username: user,
                scopes: &lines,
            }),
            cookies,
        )
    }

    /// `GET /oauth2/v2/consent?flow=…` shows the screen; the POST is the user's answer.
    pub(in crate::token) async fn consent(&self, req: &TokenRequest<'_>) -> Reply {
        let now = unix_now();
        let form = match page_params(req, "Cannot continue", "Use the consent form.") {
            Ok(f) => f,
            Err(reply) => return reply,
        };
        let posted = *req.method == Method::POST;
        let (flow_id, flow, secret, client) = match self.posted_flow(req, &form, now, posted).await
        {
            Ok(f) => f,
            Err(reply) => return reply,
        };
        let Some(user) = flow.user.clone() else {
            return error_page(400, "Cannot continue", "Sign in first.");
        };
        let registry = self.registry();
        if !posted {
            return self.consent_page(&flow_id, &flow, &client, &user, &secret, Vec::new());
        }
        let issuer = self.issuer_str();
        let back = Back {
            redirect_uri: &flow.redirect_uri,
            state: flow.state.as_deref(),
            issuer: &issuer,
        };
        match form.get("decision") {
            Some("allow") => {}
            Some("deny") => {
                // The flow is over either way.
                let _ = self
                    .store
                    .delete_ephemeral(Ephemeral::LoginFlow, &digest(&flow_id))
                    .await;
                return back.error(ErrorCode::AccessDenied, "the user did not allow it");
            }
            _ => return error_page(400, "Cannot continue", "Choose allow or deny."),
        }
        // Remembered in the session, so the next sign-in to this client skips the screen.
        if let Some(id) = cookies::get(req.cookie, cookies::SESSION, req.tls)
            && let Ok(scopes) = self.scopes_for(&client, &flow)
            && let Ok(Some(raw)) = self
                .store
                .get_ephemeral(Ephemeral::Session, &digest(id), now)
                .await
            && let Ok(mut s) = serde_json::from_slice::<Session>(&raw)
            && s.username == user
        {
            s.consents.retain(|(c, _)| *c != client.id);
            s.consents.push((client.id.clone(), scopes));
            let lifetime = self.settings.session_lifetime.as_secs() as i64;
            if let Ok(v) = serde_json::to_vec(&s) {
                // A session that outlives its consent record only asks again.
                let _ = self
                    .store
                    .put_ephemeral(Ephemeral::Session, digest(id), v, s.auth_time + lifetime)
                    .await;
            }
        }
        self.finish(flow_id, flow, Vec::new(), &registry).await
    }

    /// The end of a flow: consumed (single use), a code stored, the browser sent back.
    pub(super) async fn finish(
        &self,
        flow_id: String,
        flow: Flow,
        cookies: Vec<HeaderValue>,
        registry: &Registry,
    ) -> Reply {
        let issuer = self.issuer_str();
        let back = Back {
            redirect_uri: &flow.redirect_uri,
            state: flow.state.as_deref(),
            issuer: &issuer,
        };
        let now = unix_now();
        // A flow saved earlier is used once; one that ends at once (a session, no consent
        // screen) was never stored, and consuming it finds nothing.
        match self
            .store
            .consume_ephemeral(Ephemeral::LoginFlow, &digest(&flow_id), now)
            .await
        {
            Ok(Consumed::Again(_)) => {
                return error_page(400, "Already used", "This sign-in was already completed.");
            }
            Ok(_) => {}
            Err(_) => {
                return back.error(
                    ErrorCode::TemporarilyUnavailable,
                    "the token store is unavailable",
                );
            }
        }
        let Some(client) = registry.client(family_of(flow.family), &flow.client_id) else {
            return back.error(ErrorCode::UnauthorizedClient, "the client is gone");
        };
        let Some(username) = flow.user.clone() else {
            return back.error(ErrorCode::AccessDenied, "no user");
        };
        let scopes = match self.scopes_for(&client, &flow) {
            Ok(s) => s,
            Err(e) => return back.error(e.code, &e.description),
        };
        let audiences = match &flow.api {
            Some(api) => registry
                .api(api)
                .filter(|a| registry.permits(Some(&client.id), Some(&username), &a.name))
                .map(|a| vec![a.audience.clone()])
                .unwrap_or_default(),
            None => registry.permitted_audiences(&client.id, Some(&username), &client.audiences),
        };
        if audiences.is_empty() {
            return back.error(
                ErrorCode::AccessDenied,
                "this user may not call the client's APIs",
            );
        }
        let (Some(code), Some(gid)) = (random_secret(), grant_id(unix_now_ms())) else {
            return back.error(ErrorCode::ServerError, "no randomness available");
        };
        let record = Code {
            family: flow.family,
            client_id: client.id.clone(),
            redirect_uri: flow.redirect_uri.clone(),
            redirect_uri_given: flow.redirect_uri_given,
            challenge: flow.challenge.clone(),
            scopes,
            audiences,
            username,
            nonce: flow.nonce.clone(),
            auth_time: flow.auth_time.unwrap_or(now),
            grant_id: GrantId::new(gid),
            api: flow.api.clone(),
        };
        let stored = match serde_json::to_vec(&record) {
            Ok(v) => self
                .store
                .put_ephemeral(Ephemeral::AuthCode, digest(&code), v, now + CODE_TTL)
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !stored {
            return back.error(
                ErrorCode::TemporarilyUnavailable,
                "the token store is unavailable",
            );
        }
        log::debug!("authorize: a code for client {}", client.id);
        back.with(&[("code", &code)], cookies)
    }
}
