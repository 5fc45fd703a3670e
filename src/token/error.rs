//! RFC 6749 §5.2 error responses of the token endpoints.

use std::borrow::Cow;

/// The `error` codes of RFC 6749 §5.2 (token endpoint) and §4.1.2.1 (authorization
/// endpoint, sent back to the client's redirect URI), with those OpenID Connect Core §3.1.2.6
/// adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    ServerError,
    TemporarilyUnavailable,
    /// RFC 8693 §2.2.2: the requested audience or resource is not one the client may have.
    InvalidTarget,
    /// Seed 003's 404s (no such client, no such user).
    NotFound,
    /// RFC 6749 §4.1.2.1: only `response_type=code` is served.
    UnsupportedResponseType,
    /// RFC 6749 §4.1.2.1: the user (or the gateway for them) said no.
    AccessDenied,
    /// OpenID Connect: `prompt=none` and the user is not signed in.
    LoginRequired,
    /// OpenID Connect: `prompt=none` and the user has not consented.
    ConsentRequired,
    /// OpenID Connect: request objects (`request=`) are not supported.
    RequestNotSupported,
    /// RFC 9449 §5: the DPoP proof is missing (where required) or invalid.
    InvalidDpopProof,
    /// RFC 9449 §8: the proof must carry the nonce sent in `DPoP-Nonce`.
    UseDpopNonce,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
        }
    }

    fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient => 401,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

/// A token-endpoint failure: knows its code, HTTP status and description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
    /// Overrides the code's usual status (405, 413, 415).
    pub status: Option<u16>,
    /// The client tried HTTP Basic: a 401 must carry a Basic challenge (RFC 6749 §5.2).
    pub basic_challenge: bool,
    /// Seconds to announce in `Retry-After`.
    pub retry_after: Option<u64>,
    /// A `DPoP-Nonce` to send along (RFC 9449 §8).
    pub dpop_nonce: Option<String>,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            description: description.into(),
            status: None,
            basic_challenge: false,
            retry_after: None,
            dpop_nonce: None,
        }
    }

    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.code.status())
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::json!({
            "error": self.code.as_str(),
            "error_description": self.description,
        })
        .to_string()
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        let e = OAuthError::new(ErrorCode::InvalidClient, "unknown client");
        assert_eq!(e.status(), 401);
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"], "invalid_client");
        assert_eq!(v["error_description"], "unknown client");
        assert_eq!(OAuthError::invalid_request("x").status(), 400);
        assert_eq!(
            OAuthError::invalid_request("x").with_status(405).status(),
            405
        );
        assert_eq!(
            OAuthError::new(ErrorCode::TemporarilyUnavailable, "x").status(),
            503
        );
    }
}
