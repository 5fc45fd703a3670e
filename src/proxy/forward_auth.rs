//! The forward-auth decision endpoint, for front proxies that keep their place (nginx
//! `auth_request`, Traefik `ForwardAuth`, Envoy `ext_authz` over HTTP, Caddy
//! `forward_auth`): on its own listener, it takes the original request as they send it,
//! runs the same route match, credential check, scope rules, rate limits and cache as the
//! proxy, and answers 200 with the identity headers for the front proxy to copy, or the
//! refusal the proxy itself would send (401/403/429 with `WWW-Authenticate`,
//! `Retry-After`).
//!
//! The original request: method from `X-Forwarded-Method` (Traefik, Caddy) or
//! `X-Original-Method` (nginx), else the request's own (Envoy); URI from `X-Forwarded-Uri`
//! or `X-Original-URI`, else the request's own; host from `X-Forwarded-Host` or
//! `X-Original-Host`, else `Host`. The listener trusts these headers: it must be reachable
//! by the front proxies only (loopback by default).

use super::admission::Gatekeeper;
use super::identity;
use crate::auth::refusal::Refusal;
use crate::path;
use crate::routes::host_without_port;
use async_trait::async_trait;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderName, HeaderValue, Method, Response, StatusCode, Uri};
use pingora::apps::http_app::ServeHttp;
use pingora::http::RequestHeader;
use pingora::protocols::http::ServerSession;
use std::borrow::Cow;
use std::sync::Arc;

pub struct ForwardAuth {
    pub gate: Arc<Gatekeeper>,
}

/// The first of `names` the request carries, as text.
fn first<'r>(req: &'r RequestHeader, names: &[&str]) -> Option<&'r str> {
    names
        .iter()
        .find_map(|n| req.headers.get(*n))
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

/// The original request, as the front proxy describes it: its method, URI and host,
/// with the client's headers (the credential among them).
fn original(req: &RequestHeader) -> Result<RequestHeader, Refusal> {
    let method = match first(req, &["x-forwarded-method", "x-original-method"]) {
        Some(m) => Method::from_bytes(m.as_bytes())
            .map_err(|_| Refusal::bad_request("the original method is not a method"))?,
        None => req.method.clone(),
    };
    let uri: Uri = match first(req, &["x-forwarded-uri", "x-original-uri"]) {
        Some(u) => u
            .parse()
            .map_err(|_| Refusal::bad_request("the original URI is not a URI"))?,
        None => req.uri.clone(),
    };
    let path = match path::normalize(uri.path()) {
        Ok(p) => p,
        Err(bad) => return Err(Refusal::bad_request(bad.message())),
    };
    let path_and_query = match uri.query() {
        Some(q) => Cow::Owned(format!("{path}?{q}")),
        None => path,
    };
    let mut out = RequestHeader::build(method, path_and_query.as_bytes(), None)
        .map_err(|_| Refusal::bad_request("the original request cannot be rebuilt"))?;
    for (name, value) in req.headers.iter() {
        if *name != HOST {
            out.append_header(name.clone(), value.clone())
                .map_err(|_| Refusal::bad_request("a header cannot be copied"))?;
        }
    }
    if let Some(host) = first(req, &["x-forwarded-host", "x-original-host"])
        .or_else(|| req.headers.get(HOST).and_then(|h| h.to_str().ok()))
    {
        out.insert_header(HOST, host)
            .map_err(|_| Refusal::bad_request("the original host is not a header value"))?;
    }
    Ok(out)
}

fn respond(
    status: u16,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
) -> Response<Vec<u8>> {
    // A length, even 0: without one the front proxy reads to the end of the connection and
    // cannot reuse it for the next decision.
    let length = HeaderValue::from(body.len());
    let mut resp = Response::new(body);
    resp.headers_mut().insert(CONTENT_LENGTH, length);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (n, v) in headers {
        resp.headers_mut().append(n, v);
    }
    resp
}

fn refused(r: Refusal) -> Response<Vec<u8>> {
    let body = r.body().to_vec();
    let mut headers = r.headers;
    headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
    respond(r.status, headers, body)
}

impl ForwardAuth {
    async fn decide(&self, req: &RequestHeader) -> Result<Vec<(HeaderName, HeaderValue)>, Refusal> {
        let original = original(req)?;
        let catalog = self.gate.catalog.current();
        let host = original
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(host_without_port);
        let Some(api) = catalog.routes.lookup(host, original.uri.path()) else {
            return Err(Refusal::no_route());
        };
        let mode = api.auth_for(&original.method, original.uri.path());
        if mode.is_none() {
            // A public operation: nothing to vouch for.
            return Ok(Vec::new());
        }
        // The front proxy terminated the client's connection: its scheme is what it says.
        let channel = match first(req, &["x-forwarded-proto"]) {
            Some(p) if p.eq_ignore_ascii_case("https") => super::sender::Channel {
                scheme: "https",
                client_cert: None,
            },
            _ => super::sender::Channel::PLAIN,
        };
        let admitted = self
            .gate
            .admit(&original, api, mode, &catalog, channel)
            .await?;
        let mut headers: Vec<(HeaderName, HeaderValue)> = identity::headers(api, &admitted.caller)
            .map(|(h, v)| (h.name.clone(), v.clone()))
            .collect();
        if let Some(p) = admitted.phantom {
            headers.push((AUTHORIZATION, p));
        }
        if let Some((decision, policy)) = &admitted.limited {
            headers.extend(
                decision
                    .headers(policy)
                    .into_iter()
                    .map(|(n, v)| (n.clone(), v)),
            );
        }
        Ok(headers)
    }
}

#[async_trait]
impl ServeHttp for ForwardAuth {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match self.decide(session.req_header()).await {
            Ok(headers) => respond(200, headers, Vec::new()),
            Err(refusal) => refused(refusal),
        }
    }
}
