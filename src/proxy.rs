//! The `ProxyHttp` implementation: each phase is a few lines calling named helpers.
//! Order in `request_filter`: path normalization, token-service paths, API route, then
//! the credential check; everything that passes goes to the API's upstream pool.

mod access_log;
mod admission;
pub mod forward_auth;
mod header_limits;
mod identity;
mod respond;
pub mod sender;
pub mod slow_clients;
mod token_endpoint;
mod trace;

pub use admission::{Admitted, Caller, Gatekeeper};
pub use header_limits::HeaderLimits;
pub use respond::begin_draining;

use crate::auth::ratelimit::Decision;
use crate::auth::refusal::Refusal;
use crate::config::AccessLog;
use crate::metrics::{self, ApiSeries, Metrics};
use crate::path;
use crate::routes::{Api, host_without_port};
use crate::token::TokenService;
use crate::upstream::HostRewrite;
use async_trait::async_trait;
use bytes::Bytes;
use http::header::HOST;
use http::header::InvalidHeaderValue;
use http::{HeaderName, HeaderValue, Uri};
use pingora::http::RequestHeader;
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// How Host is written when this gateway adds it (`http`'s title case for it).
static HOST_CASE: Bytes = Bytes::from_static(b"Host");

/// The gateway: the catalog (routes, clients, issuers), authenticator and token service,
/// shared by all requests.
pub struct Gateway {
    /// The credential check (shared with the forward-auth listener).
    pub gate: Arc<Gatekeeper>,
    pub tokens: TokenService,
    pub metrics: Arc<Metrics>,
    pub access_log: AccessLog,
    /// Request ids: taken or made, sent upstream and back.
    pub request_ids: bool,
    /// Bounds on a request's header fields.
    pub header_limits: HeaderLimits,
    /// Start a `traceparent` for requests without one.
    pub start_traces: bool,
    /// Request metrics of the token service and of requests no API matched.
    pub token_service_series: ApiSeries,
    pub unmatched_series: ApiSeries,
}

/// What a check of the request decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// It goes on.
    Pass,
    /// It has been answered here (refused): nothing more to do.
    Answered,
}

/// Where a request went.
enum Target {
    Unrouted,
    TokenService,
    Api(Arc<Api>),
}

/// Per-request state.
pub struct Ctx {
    start: Instant,
    target: Target,
    upstream: Option<SocketAddr>,
    upstream_sent: Option<Instant>,
    upstream_time: Option<Duration>,
    tries: usize,
    /// The rate limit that counted this request, for its RateLimit headers.
    limited: Option<(Decision, HeaderValue)>,
    /// Who passed the credential check (a protected operation).
    caller: Option<Caller>,
    /// The phantom token that replaces the credential upstream.
    phantom: Option<HeaderValue>,
    /// The request's id (when request ids are on).
    request_id: Option<HeaderValue>,
    /// The trace context started here (when the request came without one).
    traceparent: Option<HeaderValue>,
}

impl Ctx {
    fn api_label(&self) -> &str {
        match &self.target {
            Target::Api(api) => &api.name,
            Target::TokenService => metrics::TOKEN_SERVICE,
            Target::Unrouted => metrics::UNMATCHED,
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Instant::now(),
            target: Target::Unrouted,
            upstream: None,
            upstream_sent: None,
            upstream_time: None,
            tries: 0,
            limited: None,
            caller: None,
            phantom: None,
            request_id: None,
            traceparent: None,
        }
    }

    /// No downstream modules: tollgate does not compress responses.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    /// `Ok(true)`: the request has been answered here.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        slow_clients::request_started(session);
        if self.request_ids {
            ctx.request_id = Some(trace::request_id(session.req_header()));
        }
        if self.start_traces && !trace::has_traceparent(session.req_header()) {
            ctx.traceparent = Some(trace::new_traceparent());
        }
        if let Some(refusal) = self.header_limits.check(session.req_header()) {
            refuse(session, ctx, refusal).await?;
            return Ok(true);
        }
        if normalize_path(session, ctx).await? == Admission::Answered {
            return Ok(true);
        }
        let path = session.req_header().uri.path();
        let host = request_host(session.req_header()).map(host_without_port);
        let catalog = self.gate.catalog.load();
        if let Some(endpoint) = token_endpoint::token_endpoint(&catalog, host, path) {
            drop(catalog);
            ctx.target = Target::TokenService;
            // Boxed: its state stays out of the future every proxied request allocates.
            Box::pin(self.serve_token_endpoint(session, &endpoint, ctx.request_id.as_ref()))
                .await?;
            return Ok(true);
        }
        let Some(api) = catalog.routes.lookup(host, path) else {
            drop(catalog);
            refuse(session, ctx, Refusal::no_route()).await?;
            return Ok(true);
        };
        let mode = api.auth_for(&session.req_header().method, path);
        if mode.is_none() {
            ctx.target = Target::Api(api.clone());
            return Ok(false);
        }
        let api = api.clone();
        // The catalog outlives the checks even if a reload replaces it meanwhile.
        let catalog = arc_swap::Guard::into_inner(catalog);
        let verdict = self
            .gate
            .admit(
                session.req_header(),
                &api,
                mode,
                &catalog,
                sender::Channel::of(session.digest()),
            )
            .await;
        ctx.target = Target::Api(api);
        match verdict {
            Ok(admitted) => {
                ctx.caller = Some(admitted.caller);
                ctx.limited = admitted.limited;
                ctx.phantom = admitted.phantom;
                Ok(false)
            }
            Err(refusal) => {
                refuse(session, ctx, refusal).await?;
                Ok(true)
            }
        }
    }

    /// The RateLimit headers of a rate-limited API and the request id, on the upstream's
    /// answer; `Connection: close` once draining.
    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut pingora::http::ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        respond::close_if_draining(session);
        // The four RateLimit headers and the request id, in one step.
        upstream_response.reserve_headers(5)?;
        if let Some((decision, policy)) = &ctx.limited {
            for (name, value) in decision.headers(policy) {
                upstream_response.insert_parsed_header(name.clone(), name.as_str(), value)?;
            }
        }
        if let Some(id) = &ctx.request_id {
            let name = &trace::X_REQUEST_ID;
            upstream_response.insert_parsed_header(name.clone(), name.as_str(), id.clone())?;
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Target::Api(api) = &ctx.target else {
            return Error::e_explain(ErrorType::InternalError, "no API selected");
        };
        ctx.tries += 1;
        // A retry goes to another server than the one that just failed.
        let server = if ctx.tries > 1 {
            api.pool.select_other(ctx.upstream)
        } else {
            api.pool.select()
        };
        match server {
            Some(server) => {
                ctx.upstream = Some(server.addr);
                Ok(server.peer())
            }
            None => Error::e_explain(ErrorType::HTTPStatus(502), "no healthy upstream server"),
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Target::Api(api) = &ctx.target {
            // What may be added below, in one step: Host, X-Forwarded-For and -Proto, the
            // request id, traceparent and the identity headers.
            let adds = 5 + api.identity.headers.len();
            upstream_request.reserve_headers(adds)?;
            prepare_upstream_request(session, upstream_request, api, ctx.upstream)?;
            identity::remove_forged(upstream_request, api);
            if let Some(caller) = &ctx.caller {
                identity::apply(upstream_request, api, caller, ctx.phantom.as_ref())?;
            }
            if let Some(id) = &ctx.request_id {
                add_header(upstream_request, &trace::X_REQUEST_ID, id.clone())?;
            }
            if let Some(t) = &ctx.traceparent {
                add_header(upstream_request, &trace::TRACEPARENT, t.clone())?;
            }
        }
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut pingora::http::ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_time = ctx.upstream_sent.map(|t| t.elapsed());
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Try another server of the pool, up to `upstream.retries` of them.
        if let Target::Api(api) = &ctx.target
            && ctx.tries <= api.pool.retries
        {
            e.set_retry(true);
        }
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let status = respond::failure_status(e);
        // (An upstream may have answered before the request body failed: it stands.)
        let answered = session.response_written().is_some();
        if let Some(status) = status.filter(|_| !answered) {
            // Pingora closes the client connection after a proxy failure: turning keep-alive
            // off first makes the response say `Connection: close`, so clients do not reuse it.
            session.as_downstream_mut().set_keepalive(None);
            if let Err(write_error) = refuse(session, ctx, Refusal::proxy_failure(status)).await {
                log::debug!("could not send the error response: {write_error}");
            }
        }
        FailToProxy {
            // 0: no response (the client is gone).
            error_code: status.unwrap_or(0),
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        let api = ctx.api_label();
        let series = match &ctx.target {
            Target::Api(a) => &a.series,
            Target::TokenService => &self.token_service_series,
            Target::Unrouted => &self.unmatched_series,
        };
        let elapsed = ctx.start.elapsed();
        series.record(
            &self.metrics,
            api,
            &req.method,
            status,
            elapsed,
            ctx.upstream_time,
        );
        if self.access_log != AccessLog::Off {
            access_log::record(self.access_log, session, ctx, status, elapsed);
        }
        slow_clients::request_finished(session);
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        if end_of_stream {
            slow_clients::body_done(session);
        }
        Ok(())
    }

    /// A client that went away is not a gateway error: keep it out of the error log.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, e: &Error) -> bool {
        *e.esource() == ErrorSource::Downstream
            && matches!(
                e.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            )
    }

    /// Used in Pingora's error logs: method, path and host, never the query string
    /// (it may carry credentials).
    fn request_summary(&self, session: &Session, _ctx: &Ctx) -> String {
        let req = session.req_header();
        format!(
            "{} {}, Host: {}",
            req.method,
            req.uri.path(),
            request_host(req).unwrap_or("-")
        )
    }
}

/// Answer with `refusal`, and the request's id.
fn refuse<'a>(session: &'a mut Session, ctx: &Ctx, mut refusal: Refusal) -> respond::Sending<'a> {
    if let Some(id) = &ctx.request_id {
        refusal
            .headers
            .push((trace::X_REQUEST_ID.clone(), id.clone()));
    }
    respond::send_refusal(session, refusal)
}

/// Normalize the request path in place; a path it refuses is answered with 400.
async fn normalize_path(session: &mut Session, ctx: &Ctx) -> Result<Admission> {
    let rewritten = match path::normalize(session.req_header().uri.path()) {
        Ok(Cow::Borrowed(_)) => return Ok(Admission::Pass),
        Ok(Cow::Owned(p)) => p,
        Err(bad) => {
            refuse(session, ctx, Refusal::bad_request(bad.message())).await?;
            return Ok(Admission::Answered);
        }
    };
    let uri = with_path(&session.req_header().uri, &rewritten)?;
    session.req_header_mut().set_uri(uri);
    Ok(Admission::Pass)
}

/// `uri` with its path replaced, query kept, in origin form.
fn with_path(uri: &Uri, path: &str) -> Result<Uri> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    Uri::builder()
        .path_and_query(pq)
        .build()
        .or_err(ErrorType::InternalError, "cannot rebuild the request URI")
}

pub(crate) fn request_host(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

/// Path (prefix stripped), Host, and the X-Forwarded-* headers of the upstream request.
/// Runs on every proxied request: it touches a header only when it must change, and
/// builds no value it can take ready-made.
fn prepare_upstream_request(
    session: &Session,
    upstream_request: &mut RequestHeader,
    api: &Api,
    upstream: Option<SocketAddr>,
) -> Result<()> {
    let path = upstream_request.uri.path();
    let new_path = api.upstream_path(path);
    if new_path != path || upstream_request.uri.scheme().is_some() {
        let uri = with_path(&upstream_request.uri, new_path)?;
        upstream_request.set_uri(uri);
    }
    match &api.pool.host_header {
        // The upstream request is a copy of the client's, Host included. A request that
        // named its host in an absolute-form URI alone gets that one; an HTTP/1.0 request
        // without any gets the server's, since the HTTP/1.1 request it becomes must carry
        // one (RFC 9112 §3.2; nginx sends `$proxy_host` the same way).
        HostRewrite::Pass => {
            if !upstream_request.headers.contains_key(HOST) {
                if let Some(h) = request_host(session.req_header()) {
                    upstream_request.insert_header(HOST, h.to_owned())?;
                } else if let Some(authority) = upstream.and_then(|a| api.pool.authority(&a)) {
                    set_host(upstream_request, authority.clone())?;
                }
            }
        }
        HostRewrite::Upstream => {
            if let Some(authority) = upstream.and_then(|a| api.pool.authority(&a)) {
                set_host(upstream_request, authority.clone())?;
            }
        }
        HostRewrite::Set(v) => set_host(upstream_request, v.clone())?,
    }
    if let Some(ip) = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
    {
        let forwarded = match upstream_request
            .headers
            .get(&X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
        {
            Some(prior) => HeaderValue::try_from(format!("{prior}, {ip}")),
            None => ip_header_value(ip),
        }
        .or_err(ErrorType::InternalError, "cannot build X-Forwarded-For")?;
        add_header(upstream_request, &X_FORWARDED_FOR, forwarded)?;
    }
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
    add_header(upstream_request, &X_FORWARDED_PROTO, proto)
}

/// Set a header this gateway adds upstream, under a name made once and written as it is
/// (lowercase), without parsing the name again.
fn add_header(
    req: &mut RequestHeader,
    name: &'static HeaderName,
    value: HeaderValue,
) -> Result<()> {
    req.insert_parsed_header(name.clone(), name.as_str(), value)
}

/// Host set to `value`: inserted under its parsed name, not parsed again.
fn set_host(req: &mut RequestHeader, value: HeaderValue) -> Result<()> {
    req.insert_parsed_header(HOST, HOST_CASE.clone(), value)
}

/// `ip` as a header value, as `Display` writes it. An IPv4 address (what nearly every
/// request carries) is written by hand: `to_string` goes through the formatting machinery
/// and a `String`, on every proxied request.
fn ip_header_value(ip: IpAddr) -> std::result::Result<HeaderValue, InvalidHeaderValue> {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::try_from(ip.to_string());
    };
    let mut buf = [0u8; 15];
    let mut len = 0;
    let mut push = |b: u8| {
        if let Some(slot) = buf.get_mut(len) {
            *slot = b;
            len += 1;
        }
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            push(b'.');
        }
        if octet >= 100 {
            push(b'0' + octet / 100);
        }
        if octet >= 10 {
            push(b'0' + octet / 10 % 10);
        }
        push(b'0' + octet % 10);
    }
    HeaderValue::from_bytes(buf.get(..len).unwrap_or_default())
}
