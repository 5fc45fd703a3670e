//! Responses the gateway writes itself: its own endpoints, refusals and upstream failures.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::future::Future;
use std::pin::Pin;

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
        let head_only = session.req_header().method == Method::HEAD || body.is_empty();
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(())
    })
}

/// A small JSON error body: `{"error": code, "error_description": text}`.
pub fn json_error(code: &str, description: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "error": code, "error_description": description }).to_string())
}

/// Write a JSON error with the given status.
pub fn send_error<'a>(
    session: &'a mut Session,
    status: u16,
    code: &str,
    description: &str,
    mut headers: Vec<(HeaderName, HeaderValue)>,
) -> Sending<'a> {
    headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
    send(session, status, headers, json_error(code, description))
}

/// The status a proxying failure answers with: 504 when the upstream timed out, 502 for
/// other upstream failures, 0 when the client is gone.
pub fn failure_status(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if *e.esource() == ErrorSource::Upstream =>
        {
            504
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                ErrorType::ReadTimedout => 408,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// The JSON `error` code and description for a failure status.
pub fn failure_body(status: u16) -> (&'static str, &'static str) {
    match status {
        504 => ("gateway_timeout", "the upstream did not answer in time"),
        502 => (
            "bad_gateway",
            "the upstream could not be reached or answered badly",
        ),
        408 => ("request_timeout", "the request was not received in time"),
        400 => ("bad_request", "the request could not be read"),
        _ => ("internal_error", "the gateway failed to handle the request"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_timeouts_are_504_other_upstream_failures_502() {
        let e = Error::create(ErrorType::ReadTimedout, ErrorSource::Upstream, None, None);
        assert_eq!(failure_status(&e), 504);
        let e = Error::create(
            ErrorType::ConnectTimedout,
            ErrorSource::Upstream,
            None,
            None,
        );
        assert_eq!(failure_status(&e), 504);
        let e = Error::create(ErrorType::ConnectRefused, ErrorSource::Upstream, None, None);
        assert_eq!(failure_status(&e), 502);
        let e = Error::create(
            ErrorType::ConnectionClosed,
            ErrorSource::Downstream,
            None,
            None,
        );
        assert_eq!(failure_status(&e), 0);
        assert_eq!(failure_status(&Error::new(ErrorType::HTTPStatus(503))), 503);
        assert_eq!(failure_status(&Error::new(ErrorType::InternalError)), 500);
    }
}
