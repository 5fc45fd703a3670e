//! `/oauth2/v2/logout` (OpenID Connect RP-Initiated Logout 1.0): the browser session ends.

use super::answers::{page, page_params, see_other};
use super::{cookies, pages, redirect};
use crate::store::{Ephemeral, digest};
use crate::token::{Reply, TokenRequest, TokenService};
use http::HeaderValue;

impl TokenService {
    /// `/oauth2/v2/logout` (OpenID Connect RP-Initiated Logout): the session ends; the
    /// browser goes back to a registered `post_logout_redirect_uri`, or sees a page.
    pub(in crate::token) async fn logout(&self, req: &TokenRequest<'_>) -> Reply {
        let form = match page_params(req, "Cannot sign out", "Use GET or a form POST.") {
            Ok(f) => f,
            Err(reply) => return reply,
        };
        if let Some(id) = cookies::get(req.cookie, cookies::SESSION, req.tls) {
            let _ = self
                .store
                .delete_ephemeral(Ephemeral::Session, &digest(id))
                .await;
        }
        let gone: Vec<HeaderValue> = cookies::set(cookies::SESSION, "", Some(0), req.tls)
            .into_iter()
            .collect();
        let Some(target) = form.get("post_logout_redirect_uri") else {
            return page(200, pages::signed_out(), gone);
        };
        // The client: named, or the audience of the ID token it passes as a hint.
        let hinted = form
            .get("id_token_hint")
            .and_then(|t| self.auth.validator().signed_claims(t).ok())
            .and_then(|c| c.aud.first().cloned());
        let registry = self.registry();
        let client = form
            .get("client_id")
            .map(str::to_string)
            .or(hinted)
            .and_then(|id| registry.any_client(&id));
        match client {
            Some(c) if redirect::matches(&c.browser.post_logout_redirect_uris, target) => {
                let location = match form.get("state") {
                    Some(s) => redirect::with_params(target, &[("state", s)]),
                    None => Some(target.to_string()),
                };
                match location {
                    Some(l) => see_other(&l, gone),
                    None => page(200, pages::signed_out(), gone),
                }
            }
            _ => page(200, pages::signed_out(), gone),
        }
    }
}
