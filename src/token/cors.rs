//! CORS for browser apps on the token, revoke and userinfo endpoints: preflights, and
//! `Access-Control-Allow-Origin` for an origin the calling client allows.

use super::form::Form;
use super::{Reply, TokenRequest, TokenService};
use crate::domain::endpoint::Endpoint;
use http::header::VARY;
use http::{HeaderName, HeaderValue};

impl TokenService {
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
        let allowed = match client_id.and_then(|id| registry.any_client(&id)) {
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
