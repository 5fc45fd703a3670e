//! The access log: one line per request, as text or as JSON for log shippers. It names the
//! caller (the way in, the client id, the subject), never what they called with: no
//! token, key, secret or query string reaches it.

use super::{Ctx, Target};
use crate::config::AccessLog;
use crate::domain::clock::rfc3339;
use pingora::proxy::Session;
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Log one request.
pub(super) fn record(
    format: AccessLog,
    session: &Session,
    ctx: &Ctx,
    status: u16,
    elapsed: Duration,
) {
    let req = session.req_header();
    let client = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_string());
    let (via, client_id, subject) = match &ctx.caller {
        Some(c) => (
            Some(match c.issuer() {
                Some(iss) => Cow::Owned(format!("external:{}", loggable(iss))),
                None => Cow::Borrowed(c.way_in().as_str()),
            }),
            c.client_id().map(loggable),
            c.subject().map(loggable),
        ),
        None => (None, None, None),
    };
    let api = ctx.api_label();
    let ms = elapsed.as_secs_f64() * 1000.0;
    let request_id = ctx.request_id.as_ref().and_then(|v| v.to_str().ok());
    // A gRPC answer in one headers frame (tollgate's refusals among them) carries its
    // status there: HTTP 200 alone would hide a refused call.
    let grpc_status = session
        .response_written()
        .and_then(|r| r.headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok());
    match format {
        AccessLog::Off => {}
        AccessLog::Text => {
            let dash = |v: Option<&str>| v.unwrap_or("-").to_string();
            log::info!(
                target: "access",
                "{} \"{} {}\" {status} {ms:.3}ms api={api} upstream={} via={} client={} sub={} id={}{}",
                dash(client.as_deref()),
                req.method,
                req.uri.path(),
                dash(ctx.upstream.map(|a| a.to_string()).as_deref()),
                dash(via.as_deref()),
                dash(client_id.as_deref()),
                dash(subject.as_deref()),
                dash(request_id),
                grpc_status.map(|g| format!(" grpc={g}")).unwrap_or_default(),
            );
        }
        AccessLog::Json => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let time = rfc3339(i64::try_from(now.as_secs()).unwrap_or(i64::MAX));
            let mut line = Map::new();
            line.insert(
                "time".into(),
                format!("{}.{:03}Z", time.trim_end_matches('Z'), now.subsec_millis()).into(),
            );
            let mut put = |k: &str, v: Value| {
                if !v.is_null() {
                    line.insert(k.into(), v);
                }
            };
            put("request_id", json!(request_id));
            put("client", json!(client));
            put("method", json!(req.method.as_str()));
            put("path", json!(req.uri.path()));
            put(
                "host",
                json!(super::request_host(req).map(super::host_without_port)),
            );
            put("status", json!(status));
            put("grpc_status", json!(grpc_status));
            put("bytes_in", json!(session.body_bytes_read()));
            put("bytes_out", json!(session.body_bytes_sent()));
            put("duration_ms", json!((ms * 1000.0).round() / 1000.0));
            put("api", json!(api));
            if let Target::Api(_) = ctx.target {
                put("upstream", json!(ctx.upstream.map(|a| a.to_string())));
                put(
                    "upstream_ms",
                    json!(
                        ctx.upstream_time
                            .map(|d| (d.as_secs_f64() * 1e6).round() / 1000.0)
                    ),
                );
            }
            put("via", json!(via));
            put("client_id", json!(client_id));
            put("sub", json!(subject));
            log::info!(target: "access_json", "{}", Value::Object(line));
        }
    }
}

/// A name from a credential, safe in a log line: what could split or fake a field (spaces,
/// quotes, control characters) becomes `_`. External issuers' subjects are the caller's to
/// choose.
fn loggable(s: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_whitespace() || c.is_control() || c == '"';
    if s.chars().any(unsafe_char) {
        Cow::Owned(
            s.chars()
                .map(|c| if unsafe_char(c) { '_' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}
