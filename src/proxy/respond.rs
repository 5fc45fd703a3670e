//! Writing the responses the gateway makes itself: its own endpoints' replies and
//! refusals ([`Refusal`]), and the status of an upstream failure.

use super::slow_clients;
use crate::auth::refusal::Refusal;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::HttpTask;
use pingora::proxy::Session;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};

/// The future of a response being written: boxed, so that the phases that may answer
/// themselves (most requests do not) do not carry its state in their own future, which
/// every request allocates and copies.
pub type Sending<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Write a complete response. The body is left out for HEAD requests.
pub fn send(
    session: &mut Session,
    status: u16,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
) -> Sending<'_> {
    Box::pin(async move {
        let mut resp = ResponseHeader::build(status, Some(headers.len() + 2))?;
        for (name, value) in headers {
            // Appended: a browser-flow answer sets more than one cookie.
            resp.append_header(name, value)?;
        }
        resp.insert_header(CONTENT_LENGTH, body.len())?;
        close_if_draining(session);
        let head_only = session.req_header().method == Method::HEAD || body.is_empty();
        let tasks = if head_only {
            vec![HttpTask::Header(Box::new(resp), true)]
        } else {
            vec![
                HttpTask::Header(Box::new(resp), false),
                HttpTask::Body(Some(body), true),
            ]
        };
        // As tasks: their end-of-stream flags reach HTTP/2 (a header-only answer is one
        // HEADERS frame ending the stream, not headers followed by a reset).
        session.write_response_tasks(tasks).await?;
        Ok(())
    })
}

/// The process is stopping (a graceful upgrade or SIGTERM): set once, before Pingora stops
/// accepting. Process-wide, as the stop is.
static DRAINING: AtomicBool = AtomicBool::new(false);

/// From now on every answer closes its connection.
pub fn begin_draining() {
    DRAINING.store(true, Ordering::Release);
}

/// Once the process is draining or shutting down, an HTTP/1.1 answer says
/// `Connection: close` and the connection is not reused: the client opens its next request
/// on a new connection (which the new process, or another node, takes) instead of on a
/// keep-alive connection this process is about to close unread.
pub fn close_if_draining(session: &mut Session) {
    if DRAINING.load(Ordering::Acquire) || session.is_process_shutting_down() {
        session.set_keepalive(None);
    }
}

/// Write a refusal: its status, headers and JSON body; to a gRPC call, a gRPC status.
pub fn send_refusal(session: &mut Session, refusal: Refusal) -> Sending<'_> {
    if is_grpc(session) {
        return send_grpc_refusal(session, refusal);
    }
    let body = refusal.body();
    let mut headers = refusal.headers;
    headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
    send(session, refusal.status, headers, body)
}

/// A gRPC call (`content-type: application/grpc`, `application/grpc+proto`, …).
fn is_grpc(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A refusal as gRPC clients read one: HTTP 200 whose only headers frame ends the stream
/// and carries `grpc-status` and `grpc-message` (a "Trailers-Only" response in the gRPC
/// over HTTP/2 protocol), so the client sees a status instead of a protocol error. The
/// refusal's own headers (`WWW-Authenticate`, `Retry-After`, …) go along.
fn send_grpc_refusal(session: &mut Session, refusal: Refusal) -> Sending<'_> {
    Box::pin(async move {
        let mut resp = ResponseHeader::build(200, Some(refusal.headers.len() + 3))?;
        for (name, value) in refusal.headers {
            resp.append_header(name, value)?;
        }
        resp.insert_header(CONTENT_TYPE, "application/grpc")?;
        resp.insert_header("grpc-status", grpc_status(refusal.status).to_string())?;
        resp.insert_header("grpc-message", grpc_message(&refusal.description))?;
        close_if_draining(session);
        session
            .write_response_tasks(vec![HttpTask::Header(Box::new(resp), true)])
            .await?;
        Ok(())
    })
}

/// The gRPC status for a refusal's HTTP status: gRPC's own table (doc/http-grpc-status-
/// mapping.md in grpc/grpc), except that a rate limit or an oversized request is
/// RESOURCE_EXHAUSTED, as Envoy answers them.
pub fn grpc_status(http: u16) -> u8 {
    match http {
        400 => 13,       // INTERNAL
        401 => 16,       // UNAUTHENTICATED
        403 => 7,        // PERMISSION_DENIED
        404 => 12,       // UNIMPLEMENTED
        413 | 429 => 8,  // RESOURCE_EXHAUSTED
        502..=504 => 14, // UNAVAILABLE
        _ => 2,          // UNKNOWN
    }
}

/// `grpc-message`: percent-encoded outside printable ASCII, and `%` itself.
fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The status a proxying failure answers with: 504 when the upstream timed out, 502 for
/// other upstream failures; `None` when the client is gone (there is no one to answer).
pub fn failure_status(e: &Error) -> Option<u16> {
    Some(match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if *e.esource() == ErrorSource::Upstream =>
        {
            504
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                // A body cut by its deadline: the client is still there to be told.
                ErrorType::ReadError if slow_clients::timed_out(e) => 408,
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                    return None;
                }
                ErrorType::ReadTimedout => 408,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_grpc_statuses_and_messages_stay_ascii() {
        let table = [
            (401, 16),
            (403, 7),
            (429, 8),
            (413, 8),
            (502, 14),
            (503, 14),
            (404, 12),
        ];
        for (http, grpc) in table {
            assert_eq!(grpc_status(http), grpc, "{http}");
        }
        assert_eq!(grpc_status(418), 2);
        assert_eq!(grpc_message("token expired"), "token expired");
        assert_eq!(grpc_message("100% é\n"), "100%25 %C3%A9%0A");
    }

    #[test]
    fn upstream_timeouts_are_504_other_upstream_failures_502() {
        let e = Error::create(ErrorType::ReadTimedout, ErrorSource::Upstream, None, None);
        assert_eq!(failure_status(&e), Some(504));
        let e = Error::create(
            ErrorType::ConnectTimedout,
            ErrorSource::Upstream,
            None,
            None,
        );
        assert_eq!(failure_status(&e), Some(504));
        let e = Error::create(ErrorType::ConnectRefused, ErrorSource::Upstream, None, None);
        assert_eq!(failure_status(&e), Some(502));
        let e = Error::create(
            ErrorType::ConnectionClosed,
            ErrorSource::Downstream,
            None,
            None,
        );
        assert_eq!(failure_status(&e), None);
        assert_eq!(
            failure_status(&Error::new(ErrorType::HTTPStatus(503))),
            Some(503)
        );
        assert_eq!(
            failure_status(&Error::new(ErrorType::InternalError)),
            Some(500)
        );
    }
}
