//! The token-service paths, answered by the gateway itself: which request is one, and
//! handing it to the token service with the parts of the request it looks at.

use super::{Gateway, request_host, respond, slow_clients, trace};
use crate::catalog::Catalog;
use crate::domain::endpoint::Endpoint;
use crate::domain::endpoint::{API_AUTHORIZE_SUFFIX, API_TOKEN_SUFFIX, RESOURCE_METADATA_PATH};
use crate::domain::ids::ApiName;
use crate::token::TokenRequest;
use crate::token::form::MAX_BODY;
use bytes::Bytes;
use http::HeaderValue;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use pingora::prelude::*;
use pingora::proxy::Session;

/// The token-service endpoint at `path`: a fixed path, or `<api prefix>/oauth2/v2/token`
/// of an API that accepts the gateway's tokens.
pub(super) fn token_endpoint(
    catalog: &Catalog,
    host: Option<&str>,
    path: &str,
) -> Option<Endpoint> {
    if let Some(prefix) = path.strip_prefix(RESOURCE_METADATA_PATH)
        && prefix.starts_with('/')
    {
        // An API that takes tokens: its RFC 9728 document (RFC 9449 §5.1 members).
        return Some(
            catalog
                .routes
                .lookup(host, prefix)
                .filter(|api| &*api.prefix == prefix && api.auth.jwt)
                .map_or(Endpoint::Unknown, |api| {
                    Endpoint::ResourceMetadata(ApiName::new(&*api.name))
                }),
        );
    }
    if let Some(e) = Endpoint::for_path(path) {
        return Some(e);
    }
    let (prefix, authorize) = match path.strip_suffix(API_TOKEN_SUFFIX) {
        Some(p) => (p, false),
        None => (path.strip_suffix(API_AUTHORIZE_SUFFIX)?, true),
    };
    let prefix = if prefix.is_empty() { "/" } else { prefix };
    let api = catalog
        .routes
        .lookup(host, prefix)
        .filter(|api| &*api.prefix == prefix && api.auth.jwt && api.own_tokens)?;
    Some(if authorize {
        Endpoint::Authorize {
            family: crate::domain::oauth::Family::Credential,
            api: Some(ApiName::new(&*api.name)),
        }
    } else {
        Endpoint::ApiToken(ApiName::new(&*api.name))
    })
}

impl Gateway {
    pub(super) async fn serve_token_endpoint(
        &self,
        session: &mut Session,
        endpoint: &Endpoint,
        request_id: Option<&HeaderValue>,
    ) -> Result<()> {
        let body = if endpoint.reads_body() {
            match slow_clients::read_body(session, MAX_BODY).await? {
                Ok(b) => b,
                Err(mut refusal) => {
                    // The connection is not read further.
                    session.as_downstream_mut().set_keepalive(None);
                    if let Some(id) = request_id {
                        refusal
                            .headers
                            .push((trace::X_REQUEST_ID.clone(), id.clone()));
                    }
                    return respond::send_refusal(session, refusal).await;
                }
            }
        } else {
            Bytes::new()
        };
        let ssl = session.digest().and_then(|d| d.ssl_digest.as_deref());
        let tls = ssl.is_some();
        // What the handshake learned of the client certificate (server::tls), on a
        // listener that asks for one.
        let client_cert = ssl.and_then(|d| {
            d.extension
                .get::<crate::domain::certificate::ClientCertificate>()
        });
        let req = session.req_header();
        let dpop = crate::dpop::single_proof(&req.headers);
        let cookies: Vec<&str> = req
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let cookie = match cookies.as_slice() {
            [] => None,
            [one] => Some(std::borrow::Cow::Borrowed(*one)),
            many => Some(std::borrow::Cow::Owned(many.join("; "))),
        };
        let mut authorizations = req.headers.get_all(AUTHORIZATION).iter();
        let authorization = match (authorizations.next(), authorizations.next()) {
            (_, Some(_)) => Err(()),
            (first, None) => Ok(first.map(HeaderValue::as_bytes)),
        };
        let reply = self
            .tokens
            .handle(
                endpoint,
                TokenRequest {
                    method: &req.method,
                    content_type: req.headers.get(CONTENT_TYPE).map(HeaderValue::as_bytes),
                    authorization,
                    query: req.uri.query(),
                    body: &body,
                    client_ip: session
                        .client_addr()
                        .and_then(|a| a.as_inet())
                        .map(|a| a.ip()),
                    cookie: cookie.as_deref(),
                    origin: req
                        .headers
                        .get(http::header::ORIGIN)
                        .map(HeaderValue::as_bytes),
                    fetch_site: req.headers.get("sec-fetch-site").map(HeaderValue::as_bytes),
                    tls,
                    dpop,
                    host: request_host(req),
                    path: req.uri.path(),
                    client_cert,
                },
            )
            .await;
        let mut headers = reply.headers;
        if let Some(id) = request_id {
            headers.push((trace::X_REQUEST_ID.clone(), id.clone()));
        }
        respond::send(session, reply.status, headers, reply.body).await
    }
}
