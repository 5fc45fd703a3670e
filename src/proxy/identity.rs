//! What the upstream receives: the client's copies of identity headers removed (on every
//! route), the caller's identity headers added, and the credential kept, stripped or
//! replaced by its phantom token, as the API says.

use super::admission::Caller;
use crate::config::CredentialMode;
use crate::domain::oauth::WayIn;
use crate::routes::{Api, Field, IdentityHeader};
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::prelude::*;

/// Every identity header of `caller` for `api` that has a value, in a fixed order.
pub fn headers<'a>(
    api: &'a Api,
    caller: &'a Caller,
) -> impl Iterator<Item = (&'a IdentityHeader, &'a HeaderValue)> {
    let id = caller.identity();
    api.identity.headers.iter().filter_map(move |h| {
        let value = match h.field {
            Field::Subject => id.subject.as_ref(),
            Field::ClientId => id.client_id.as_ref(),
            Field::Scope => id.scope.as_ref(),
            Field::Method => Some(way_in(id.way_in)),
            Field::Issuer => id.issuer.as_ref(),
            Field::Credential => id.credential.as_ref(),
            Field::Claim(i) => id.claims.get(i).and_then(Option::as_ref).map(|c| &c.header),
        };
        Some((h, value?))
    })
}

/// The value of the way-in header.
fn way_in(w: WayIn) -> &'static HeaderValue {
    static JWT: HeaderValue = HeaderValue::from_static("jwt");
    static OPAQUE: HeaderValue = HeaderValue::from_static("opaque");
    static API_KEY: HeaderValue = HeaderValue::from_static("api_key");
    static EXTERNAL: HeaderValue = HeaderValue::from_static("external");
    match w {
        WayIn::Jwt => &JWT,
        WayIn::Opaque => &OPAQUE,
        WayIn::ApiKey => &API_KEY,
        WayIn::External => &EXTERNAL,
    }
}

/// Remove the client's copies of identity headers: a request never reaches an upstream
/// with an identity the gateway did not vouch for.
pub fn remove_forged(req: &mut RequestHeader, api: &Api) {
    // Looked at without allocating; only a request that sends one pays for the removal.
    if !req.headers.keys().any(|n| api.guard.forbids(n)) {
        return;
    }
    let forged: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|n| api.guard.forbids(n))
        .cloned()
        .collect();
    for name in forged {
        req.remove_header(&name);
    }
}

/// Write the caller's identity, and do with the credential what the API says.
pub fn apply(
    req: &mut RequestHeader,
    api: &Api,
    caller: &Caller,
    phantom: Option<&HeaderValue>,
) -> Result<()> {
    for (h, value) in headers(api, caller) {
        req.insert_parsed_header(h.name.clone(), h.wire.clone(), value.clone())?;
    }
    let credential_header = match caller {
        Caller::Token { .. } => &AUTHORIZATION,
        Caller::ApiKey { .. } => &api.api_key_header,
    };
    match api.identity.credential {
        CredentialMode::Keep => {}
        CredentialMode::Strip => {
            req.remove_header(credential_header);
        }
        CredentialMode::Phantom => {
            req.remove_header(credential_header);
            if let Some(p) = phantom {
                req.insert_header(AUTHORIZATION, p.clone())?;
            }
        }
    }
    Ok(())
}
