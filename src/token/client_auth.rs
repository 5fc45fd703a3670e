//! Which client a token request comes from: `client_secret_basic` (RFC 6749 §2.3.1,
//! form-urlencoded id and secret in HTTP Basic) or `client_secret_post` (both in the body).
//! A client must use one method only.

use super::error::{ErrorCode, OAuthError};
use super::form::Form;
use crate::domain::secret::Secret;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Basic,
    Post,
}

/// The client identity a request presents, not yet verified.
#[derive(Debug)]
pub struct PresentedClient {
    pub id: String,
    pub secret: Option<Secret<String>>,
    pub method: AuthMethod,
}

impl PresentedClient {
    /// The `invalid_client` error for this client (with a Basic challenge when it used Basic).
    pub fn rejected(&self, description: &'static str) -> OAuthError {
        let mut e = OAuthError::new(ErrorCode::InvalidClient, description);
        e.basic_challenge = self.method == AuthMethod::Basic;
        e
    }
}

/// Form-urlencoded decoding of one Basic credential part ("+" is a space).
fn form_decode(part: &str) -> Option<String> {
    let spaced = part.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Read the client's identity from the `Authorization` header or the body.
pub fn presented_client(
    authorization: Option<&[u8]>,
    form: &Form,
) -> Result<PresentedClient, OAuthError> {
    let Some(header) = authorization else {
        let id = form.get("client_id").ok_or_else(|| {
            OAuthError::new(
                ErrorCode::InvalidClient,
                "client authentication is required",
            )
        })?;
        return Ok(PresentedClient {
            id: id.to_string(),
            secret: form
                .get("client_secret")
                .map(|s| Secret::new(s.to_string())),
            method: AuthMethod::Post,
        });
    };
    let basic_error = |d: &'static str| {
        let mut e = OAuthError::new(ErrorCode::InvalidClient, d);
        e.basic_challenge = true;
        e
    };
    let text =
        std::str::from_utf8(header).map_err(|_| basic_error("malformed Authorization header"))?;
    let Some((scheme, encoded)) = text.trim().split_once(' ') else {
        return Err(basic_error("malformed Authorization header"));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(basic_error(
            "use HTTP Basic or client_secret_post to authenticate the client",
        ));
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| basic_error("malformed Basic credentials"))?;
    let (raw_id, raw_secret) = decoded
        .split_once(':')
        .ok_or_else(|| basic_error("malformed Basic credentials"))?;
    let (Some(id), Some(secret)) = (form_decode(raw_id), form_decode(raw_secret)) else {
        return Err(basic_error("malformed Basic credentials"));
    };
    if id.is_empty() {
        return Err(basic_error("malformed Basic credentials"));
    }
    if form.get("client_secret").is_some() {
        return Err(OAuthError::invalid_request(
            "the client authenticated both with HTTP Basic and in the body; use one method",
        ));
    }
    if form.get("client_id").is_some_and(|body_id| body_id != id) {
        return Err(OAuthError::invalid_request(
            "client_id in the body differs from the HTTP Basic client",
        ));
    }
    Ok(PresentedClient {
        id,
        secret: (!secret.is_empty()).then(|| Secret::new(secret)),
        method: AuthMethod::Basic,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(id: &str, secret: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))).into_bytes()
    }

    #[test]
    fn post_credentials() {
        let f = Form::parse(b"client_id=c1&client_secret=s1").unwrap();
        let p = presented_client(None, &f).unwrap();
        assert_eq!((p.id.as_str(), p.method), ("c1", AuthMethod::Post));
        assert_eq!(p.secret.unwrap().expose(), "s1");
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let f = Form::parse(b"grant_type=client_credentials").unwrap();
        let h = basic("my%3Aclient", "s%2Bcret+x");
        let p = presented_client(Some(&h), &f).unwrap();
        assert_eq!(p.id, "my:client");
        assert_eq!(p.secret.unwrap().expose(), "s+cret x");
        assert_eq!(p.method, AuthMethod::Basic);
    }

    #[test]
    fn both_methods_at_once_is_invalid_request() {
        let f = Form::parse(b"client_secret=s").unwrap();
        let e = presented_client(Some(&basic("c", "s")), &f).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        let f = Form::parse(b"client_id=other").unwrap();
        let e = presented_client(Some(&basic("c", "s")), &f).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        // The same id in the body is tolerated.
        let f = Form::parse(b"client_id=c").unwrap();
        assert!(presented_client(Some(&basic("c", "s")), &f).is_ok());
    }

    #[test]
    fn missing_or_broken_credentials_are_invalid_client() {
        let empty = Form::default();
        let e = presented_client(None, &empty).unwrap_err();
        assert_eq!((e.code, e.status()), (ErrorCode::InvalidClient, 401));
        for h in [
            &b"Basic !!!"[..],
            b"Basic",
            b"Bearer abc",
            b"Basic Y2xpZW50",
        ] {
            let e = presented_client(Some(h), &empty).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClient, "{h:?}");
            assert!(e.basic_challenge);
        }
    }
}
