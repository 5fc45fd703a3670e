//! What the authorization pages answer with: HTML pages with their security headers,
//! 303 redirects, the way back to the client, and the flow's small secrets.

use crate::token::authorize::{pages, redirect};
use crate::token::error::ErrorCode;
use crate::token::form::{Form, is_form_content_type};
use crate::token::{Reply, TokenRequest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::header::{CACHE_CONTROL, LOCATION, REFERRER_POLICY, SET_COOKIE};
use http::{HeaderName, HeaderValue, Method};

pub(super) use crate::domain::hex;

pub(super) fn random_secret() -> Option<String> {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).ok()?;
    Some(B64.encode(b))
}

/// The CSRF token of a flow: an HMAC of the flow id under the flow cookie, so a form only
/// works in the browser that holds the cookie.
pub(super) fn csrf(cookie: &str, flow: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, cookie.as_bytes());
    B64.encode(aws_lc_rs::hmac::sign(&key, flow.as_bytes()))
}

pub(super) fn eq(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// An HTML page with the pages' security headers.
pub(super) fn page(status: u16, html: String, cookies: Vec<HeaderValue>) -> Reply {
    let mut headers: Vec<(HeaderName, HeaderValue)> = pages::headers();
    headers.extend(cookies.into_iter().map(|c| (SET_COOKIE, c)));
    Reply {
        status,
        headers,
        body: html.into(),
    }
}

pub(super) fn error_page(status: u16, title: &str, message: &str) -> Reply {
    page(status, pages::error(title, message), Vec::new())
}

/// The parameters of a page request: the query of a GET, the form body of a POST. Any
/// other request gets the error page titled `title`: 405 with `wrong_method`, or 400
/// saying what is wrong with the parameters (a repeated one, RFC 6749 §3.1).
pub(super) fn page_params(
    req: &TokenRequest<'_>,
    title: &str,
    wrong_method: &str,
) -> Result<Form, Reply> {
    let parsed = match *req.method {
        Method::GET => Form::parse(req.query.unwrap_or_default().as_bytes()),
        Method::POST if req.content_type.is_some_and(is_form_content_type) => Form::parse(req.body),
        _ => return Err(error_page(405, title, wrong_method)),
    };
    parsed.map_err(|e| error_page(400, title, &e.description))
}

/// A 303 to `location` (RFC 9700 §4.11: 303, so a POST is not repeated to the client).
pub(super) fn see_other(location: &str, cookies: Vec<HeaderValue>) -> Reply {
    let mut headers = vec![
        (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ];
    match HeaderValue::from_str(location) {
        Ok(v) => headers.push((LOCATION, v)),
        Err(_) => {
            return error_page(
                500,
                "Something went wrong",
                "The redirect could not be built.",
            );
        }
    }
    headers.extend(cookies.into_iter().map(|c| (SET_COOKIE, c)));
    Reply {
        status: 303,
        headers,
        body: Default::default(),
    }
}

/// Where errors and codes go once the client and redirect URI are trusted.
pub(super) struct Back<'a> {
    pub redirect_uri: &'a str,
    pub state: Option<&'a str>,
    pub issuer: &'a str,
}

impl Back<'_> {
    pub(super) fn error(&self, code: ErrorCode, description: &str) -> Reply {
        self.with(
            &[("error", code.as_str()), ("error_description", description)],
            Vec::new(),
        )
    }

    /// The redirect with `params`, `state` and `iss` (RFC 9207), on every answer.
    pub(super) fn with(&self, params: &[(&str, &str)], cookies: Vec<HeaderValue>) -> Reply {
        let mut all: Vec<(&str, &str)> = params.to_vec();
        if let Some(s) = self.state {
            all.push(("state", s));
        }
        all.push(("iss", self.issuer));
        match redirect::with_params(self.redirect_uri, &all) {
            Some(uri) => see_other(&uri, cookies),
            None => error_page(400, "Cannot continue", "The redirect URI is not usable."),
        }
    }
}
