//! Bounds on a request's headers, checked before anything reads them: how many, how many
//! bytes in all, and no `Authorization` longer than a token can be. Past one, the answer is
//! 431 (RFC 6585 §5). Pingora's own ceilings (256 headers, 1 MiB) are far above what any
//! client needs; these are Envoy's defaults (100 headers, 60 KiB).

use crate::auth::refusal::Refusal;
use crate::domain::jose::MAX_TOKEN_LEN;
use http::header::AUTHORIZATION;
use pingora::http::RequestHeader;

/// The configured bounds (`server.max_request_headers`, `server.max_request_header_bytes`).
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimits {
    pub count: usize,
    pub bytes: usize,
}

impl HeaderLimits {
    /// The refusal for a request past a bound, if it is.
    pub fn check(&self, req: &RequestHeader) -> Option<Refusal> {
        let headers = &req.headers;
        if headers.len() > self.count {
            return Some(Refusal::headers_too_large(format!(
                "the request has {} header fields; at most {} are accepted",
                headers.len(),
                self.count
            )));
        }
        // Each field as sent: name, ": ", value, CRLF.
        let bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if bytes > self.bytes {
            return Some(Refusal::headers_too_large(format!(
                "the request's header fields take {bytes} bytes; at most {} are accepted",
                self.bytes
            )));
        }
        let authorization: usize = headers.get_all(AUTHORIZATION).iter().map(|v| v.len()).sum();
        (authorization > MAX_TOKEN_LEN + "Bearer ".len()).then(Refusal::header_too_large)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, String)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), value.as_str()).unwrap();
        }
        req
    }

    #[test]
    fn counts_fields_and_bytes() {
        let limits = HeaderLimits {
            count: 3,
            bytes: 100,
        };
        let ok = request(&[("a", "1".into()), ("b", "2".into()), ("c", "3".into())]);
        assert!(limits.check(&ok).is_none());
        let many = request(&[
            ("a", "1".into()),
            ("b", "2".into()),
            ("c", "3".into()),
            ("a", "4".into()),
        ]);
        let r = limits.check(&many).unwrap();
        assert_eq!(r.status, 431);
        assert!(
            r.description.contains("4 header fields"),
            "{}",
            r.description
        );
        let big = request(&[("x-big", "v".repeat(100))]);
        let r = limits.check(&big).unwrap();
        assert!(r.description.contains("109 bytes"), "{}", r.description);
        let token = request(&[("authorization", "B".repeat(MAX_TOKEN_LEN + 10))]);
        let wide = HeaderLimits {
            count: 10,
            bytes: 1 << 20,
        };
        assert!(wide.check(&token).is_some());
    }
}
