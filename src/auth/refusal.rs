//! What the gateway answers when it refuses a request itself, whoever refuses it: the
//! proxy (no route, a path it will not pass, a refused credential, a rate limit, an
//! upstream that failed) or a resource endpoint of the token service (userinfo). One type
//! builds the status, the `WWW-Authenticate` challenge (RFC 6750 §3), `Retry-After` and
//! the JSON body `{"error", "error_description"}`; the edge writes it.

use super::ratelimit::Decision;
use crate::domain::outcome::Outcome;
use bytes::Bytes;
use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue};
use std::borrow::Cow;

const REALM: &str = "realm=\"tollgate\"";

/// How a refused caller should authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme<'a> {
    /// `Authorization: Bearer` (RFC 6750).
    Bearer,
    /// An API key, in the named header (an API that takes only API keys).
    ApiKey { header: &'a str },
    /// `Authorization: DPoP` with a proof (RFC 9449 §7.1), signed with one of `algs`.
    Dpop { algs: &'a str },
}

/// A complete refusal: status, headers and the JSON body's code and description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// The body's `error`.
    pub code: &'static str,
    /// The body's `error_description`.
    pub description: Cow<'static, str>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Refusal {
    fn new(status: u16, code: &'static str, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            headers: Vec::new(),
        }
    }

    /// A credential check that failed: 401 (`invalid_token`), 403 (`insufficient_scope`,
    /// naming `required_scope`) or 503 when the store could not be read, with the
    /// challenge of `scheme`.
    pub fn credential(outcome: Outcome, required_scope: Option<&str>, scheme: Scheme<'_>) -> Self {
        let (status, challenge) = challenge(outcome, required_scope, scheme);
        let (code, description) = match outcome {
            Outcome::Missing | Outcome::Ok => (
                "unauthorized",
                "a valid access token or API key is required",
            ),
            Outcome::InsufficientScope => (
                "insufficient_scope",
                "the credential lacks the scope this operation needs",
            ),
            Outcome::StoreUnavailable => (
                "temporarily_unavailable",
                "the token store is unavailable; try again",
            ),
            Outcome::UnknownApiKey => ("invalid_api_key", "the API key is not valid"),
            Outcome::DpopProof | Outcome::DpopNonce => (dpop_error(outcome), outcome.description()),
            _ => ("invalid_token", "a valid access token is required"),
        };
        let mut r = Self::new(status, code, description);
        r.headers.push((
            WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge)
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"tollgate\"")),
        ));
        r
    }

    /// Over a rate limit: 429 with `Retry-After` and the RateLimit headers of the limit
    /// that refused.
    pub fn rate_limited(decision: &Decision, policy: &HeaderValue) -> Self {
        let mut r = Self::new(
            429,
            "rate_limited",
            "too many requests for this consumer; retry later",
        );
        r.headers.extend(
            decision
                .headers(policy)
                .into_iter()
                .map(|(n, v)| (n.clone(), v)),
        );
        r.headers
            .push((RETRY_AFTER, HeaderValue::from(decision.retry_after_secs)));
        r
    }

    /// No API matches the request.
    pub fn no_route() -> Self {
        Self::new(404, "not_found", "no API matches this path")
    }

    /// A request the gateway will not read or pass (a path it refuses).
    pub fn bad_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(400, "bad_request", description)
    }

    /// Header fields past the configured count or size (431, RFC 6585 §5).
    pub fn headers_too_large(description: String) -> Self {
        Self::new(431, "request_header_fields_too_large", description)
    }

    /// An `Authorization` header longer than any token (RFC 6585 §5).
    pub fn header_too_large() -> Self {
        Self::new(
            431,
            "request_header_fields_too_large",
            "the Authorization header is larger than 8 KiB",
        )
    }

    /// A token-endpoint body over the limit.
    pub fn body_too_large() -> Self {
        Self::new(413, "invalid_request", "the request body is too large")
    }

    /// A token-endpoint body that came slower than `server.client_body_min_rate` allows.
    pub fn body_too_slow() -> Self {
        Self::new(408, "invalid_request", "the request body came too slowly")
    }

    /// The answer to a request whose proxying failed with `status` (502, 504, 408, 400,
    /// 500, or a status the proxy chose).
    pub fn proxy_failure(status: u16) -> Self {
        let (code, description) = match status {
            504 => ("gateway_timeout", "the upstream did not answer in time"),
            502 => (
                "bad_gateway",
                "the upstream could not be reached or answered badly",
            ),
            408 => ("request_timeout", "the request was not received in time"),
            400 => ("bad_request", "the request could not be read"),
            _ => ("internal_error", "the gateway failed to handle the request"),
        };
        Self::new(status, code, description)
    }

    /// No bearer token at a resource endpoint: 401 with the bare challenge (RFC 6750 §3.1:
    /// no error code when no credential was sent).
    pub fn bearer_required() -> Self {
        let mut r = Self::new(401, "invalid_token", "a bearer access token is required");
        r.headers.push((
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tollgate\""),
        ));
        r
    }

    /// A refusal with its own code and text (a resource endpoint's), and the Bearer
    /// challenge naming that code.
    pub fn bearer_error(
        status: u16,
        code: &'static str,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        let mut r = Self::new(status, code, description);
        let value = format!("Bearer {REALM}, error=\"{code}\"");
        r.headers.push((
            WWW_AUTHENTICATE,
            HeaderValue::from_str(&value)
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"tollgate\"")),
        ));
        r
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        Bytes::from(
            serde_json::json!({ "error": self.code, "error_description": self.description })
                .to_string(),
        )
    }
}

/// RFC 9449 §7.1 and §9: the error codes of a refused proof.
fn dpop_error(outcome: Outcome) -> &'static str {
    if outcome == Outcome::DpopNonce {
        "use_dpop_nonce"
    } else {
        "invalid_dpop_proof"
    }
}

/// The RFC 6750 §3 challenge for a refused credential: status and `WWW-Authenticate`.
/// An API-key API answers with the same statuses and a scheme that names its header.
pub fn challenge(
    outcome: Outcome,
    required_scope: Option<&str>,
    scheme: Scheme<'_>,
) -> (u16, String) {
    let head = match scheme {
        Scheme::Bearer => format!("Bearer {REALM}"),
        Scheme::ApiKey { header } => format!("ApiKey {REALM}, header=\"{header}\""),
        Scheme::Dpop { algs } => format!("DPoP {REALM}, algs=\"{algs}\""),
    };
    match outcome {
        Outcome::Ok | Outcome::Missing => (401, head),
        Outcome::StoreUnavailable => (503, head),
        Outcome::DpopProof | Outcome::DpopNonce => (
            401,
            format!(
                "{head}, error=\"{}\", error_description=\"{}\"",
                dpop_error(outcome),
                outcome.description()
            ),
        ),
        Outcome::InsufficientScope => (
            403,
            format!(
                "{head}, error=\"insufficient_scope\", error_description=\"{}\", scope=\"{}\"",
                outcome.description(),
                required_scope.unwrap_or_default()
            ),
        ),
        _ => (
            401,
            format!(
                "{head}, error=\"invalid_token\", error_description=\"{}\"",
                outcome.description()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(o: Outcome, scope: Option<&str>) -> (u16, String) {
        challenge(o, scope, Scheme::Bearer)
    }

    #[test]
    fn challenges_follow_rfc6750() {
        assert_eq!(
            bearer(Outcome::Missing, None),
            (401, "Bearer realm=\"tollgate\"".into())
        );
        let (status, h) = bearer(Outcome::Expired, None);
        assert_eq!(status, 401);
        assert!(h.contains("error=\"invalid_token\""), "{h}");
        let (status, h) = bearer(Outcome::InsufficientScope, Some("a b"));
        assert_eq!(status, 403);
        assert!(
            h.contains("error=\"insufficient_scope\"") && h.contains("scope=\"a b\""),
            "{h}"
        );
        for o in Outcome::ALL {
            let (_, h) = bearer(o, Some("s"));
            assert!(http::HeaderValue::from_str(&h).is_ok(), "{o:?}");
        }
    }

    #[test]
    fn api_key_challenges_name_the_header_with_the_same_statuses() {
        let key = Scheme::ApiKey {
            header: "x-api-key",
        };
        for o in Outcome::ALL {
            let (bearer_status, b) = bearer(o, Some("s"));
            let (status, k) = challenge(o, Some("s"), key);
            assert_eq!(status, bearer_status, "{o:?}");
            assert!(
                k.starts_with("ApiKey realm=\"tollgate\", header=\"x-api-key\""),
                "{k}"
            );
            let rest = |h: &str, head: &str| h[head.len()..].to_string();
            assert_eq!(
                rest(&k, "ApiKey realm=\"tollgate\", header=\"x-api-key\""),
                rest(&b, "Bearer realm=\"tollgate\""),
                "{o:?}"
            );
        }
    }

    #[test]
    fn refusals_carry_their_challenge_and_a_json_body() {
        let r = Refusal::credential(Outcome::UnknownApiKey, None, Scheme::Bearer);
        assert_eq!((r.status, r.code), (401, "invalid_api_key"));
        let body: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
        assert_eq!(body["error"], "invalid_api_key");
        assert!(r.headers.iter().any(|(n, _)| *n == WWW_AUTHENTICATE));
        let r = Refusal::credential(Outcome::StoreUnavailable, None, Scheme::Bearer);
        assert_eq!((r.status, r.code), (503, "temporarily_unavailable"));
        assert_eq!(Refusal::proxy_failure(504).code, "gateway_timeout");
        assert_eq!(Refusal::proxy_failure(503).code, "internal_error");
    }
}
