//! `/oauth2/v2/login`: the sign-in form of the authorization flow and its answer (the user
//! and password checked against the client's pool, with the brute-force limits).

use super::answers::{csrf, error_page, page, random_secret, see_other};
use super::{CONSENT_PATH, LOGIN_PATH, STORE_UNAVAILABLE, Session, cookies, pages};
use crate::domain::clock::unix_now;
use crate::store::{Ephemeral, digest};
use crate::token::form::{Form, is_form_content_type};
use crate::token::limits::Subject;
use crate::token::{Reply, TokenRequest, TokenService};
use http::{HeaderValue, Method};

impl TokenService {
    /// `POST /oauth2/v2/login`: the user's password, against the client's user pool.
    pub(in crate::token) async fn login(&self, req: &TokenRequest<'_>) -> Reply {
        if *req.method != Method::POST || !req.content_type.is_some_and(is_form_content_type) {
            return error_page(405, "Cannot sign in", "Use the sign-in form.");
        }
        let Ok(form) = Form::parse(req.body) else {
            return error_page(400, "Cannot sign in", "The form could not be read.");
        };
        let now = unix_now();
        let (flow_id, mut flow, secret, client) =
            match self.posted_flow(req, &form, now, true).await {
                Ok(f) => f,
                Err(reply) => return reply,
            };
        let username = form.get("username").unwrap_or_default();
        let password = form.get("password").unwrap_or_default();
        let again = |error: &str| {
            page(
                200,
                pages::login(&pages::LoginPage {
                    action: LOGIN_PATH,
                    flow: &flow_id,
                    csrf: &csrf(&secret, &flow_id),
                    client_name: &client.browser.name,
                    username,
                    error: Some(error),
                }),
                Vec::new(),
            )
        };
        // One message for every failure: wrong password, unknown user, locked out.
        const WRONG: &str = "The username or password is wrong.";
        let Some(pool) = client.pool.clone() else {
            return again(WRONG);
        };
        let subject = Subject::User {
            pool: &pool.name,
            username,
        };
        if let Err(t) = self.limiter.check(subject, req.client_ip) {
            self.throttled(t);
            return again(WRONG);
        }
        let user = pool.users.get(username);
        let cache_id = format!("user\u{0}{}\u{0}{username}", pool.name);
        let verified = if password.is_empty() {
            false
        } else {
            match self
                .secrets
                .verify(&cache_id, password, user.map(|u| &u.password_hash))
                .await
            {
                Ok(v) => v,
                Err(_) => {
                    return error_page(
                        503,
                        "Busy",
                        "Too many sign-ins are being checked. Try again in a moment.",
                    );
                }
            }
        };
        let Some(user) = user.filter(|_| verified) else {
            self.limiter.failed(subject, req.client_ip);
            log::debug!("login: refused a password for client {}", client.id);
            return again(WRONG);
        };
        // Signed in: a session for this browser, and the flow goes on.
        let Some(session_id) = random_secret() else {
            return error_page(500, "Something went wrong", "No randomness available.");
        };
        let session = Session {
            pool: pool.name.clone(),
            username: user.username.clone(),
            auth_time: now,
            consents: Vec::new(),
        };
        let lifetime = self.settings.session_lifetime.as_secs() as i64;
        let stored = match serde_json::to_vec(&session) {
            Ok(v) => self
                .store
                .put_ephemeral(Ephemeral::Session, digest(&session_id), v, now + lifetime)
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !stored {
            return error_page(503, "Try again", "The token store is unavailable.");
        }
        let session_cookie: Vec<HeaderValue> =
            cookies::set(cookies::SESSION, &session_id, None, req.tls)
                .into_iter()
                .collect();
        flow.user = Some(user.username.clone());
        flow.auth_time = Some(now);
        let registry = self.registry();
        let skip = match self.scopes_for(&client, &flow) {
            Ok(scopes) => self.consented(&client, &session, &scopes) && !flow.force_consent,
            Err(_) => false,
        };
        if skip {
            return self.finish(flow_id, flow, session_cookie, &registry).await;
        }
        if !self.save_flow(&flow_id, &flow, now).await {
            return error_page(503, "Try again", STORE_UNAVAILABLE);
        }
        see_other(&format!("{CONSENT_PATH}?flow={flow_id}"), session_cookie)
    }
}
