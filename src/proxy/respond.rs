//! Writing the responses the gateway makes itself: its own endpoints' replies and
//! refusals ([`Refusal`]), and the status of an upstream failure.

use crate::auth::refusal::Refusal;
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

/// Write a refusal: its status, headers and JSON body.
pub fn send_refusal(session: &mut Session, refusal: Refusal) -> Sending<'_> {
    let body = refusal.body();
    let mut headers = refusal.headers;
    headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
    send(session, refusal.status, headers, body)
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
