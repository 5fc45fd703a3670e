//! The registration endpoint (RFC 7591) and the registered client's configuration
//! endpoint (RFC 7592) on the public listener: JSON in and out, errors as RFC 7591 §3.2.2
//! names them, bearer tokens (initial access, registration access) as RFC 6750 asks.

use super::{Reply, TokenRequest, TokenService};
use crate::domain::endpoint::REGISTER_PATH;
use crate::domain::ids::ClientId;
use crate::provision::ProvisionError;
use crate::provision::registration::RegistrationError;
use http::header::{ALLOW, CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderValue, Method};
use serde_json::{Map, Value, json};

/// The bearer token of `Authorization`; `Err` for anything else there.
fn bearer<'r>(req: &'r TokenRequest<'_>) -> Result<Option<&'r str>, ()> {
    match req.authorization {
        Err(()) => Err(()),
        Ok(None) => Ok(None),
        Ok(Some(value)) => {
            let text = std::str::from_utf8(value).map_err(|_| ())?;
            let (scheme, token) = text.split_once(' ').ok_or(())?;
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
                Ok(Some(token.trim()))
            } else {
                Err(())
            }
        }
    }
}

fn answer(status: u16, body: &Value) -> Reply {
    let mut r = Reply::json(status, serde_json::to_vec(body).unwrap_or_default());
    r.headers
        .push((CACHE_CONTROL, HeaderValue::from_static("no-store")));
    r.headers
        .push((PRAGMA, HeaderValue::from_static("no-cache")));
    r
}

fn error(status: u16, code: &str, text: &str) -> Reply {
    let mut r = answer(status, &json!({ "error": code, "error_description": text }));
    if status == 401 {
        let challenge = format!("Bearer realm=\"tollgate\", error=\"{code}\"");
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers.push((WWW_AUTHENTICATE, v));
        }
    }
    r
}

fn refused(e: RegistrationError) -> Reply {
    match e {
        RegistrationError::InvalidToken(why) => error(401, "invalid_token", why),
        RegistrationError::InvalidMetadata(why) => error(400, "invalid_client_metadata", &why),
        RegistrationError::InvalidRedirectUri(why) => error(400, "invalid_redirect_uri", &why),
        RegistrationError::Provision(ProvisionError::Invalid(errs)) => {
            let text = errs
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            error(400, "invalid_client_metadata", &text)
        }
        RegistrationError::Provision(ProvisionError::Conflict(..)) => error(
            409,
            "invalid_request",
            "the registration changed meanwhile; read it again with the newest registration access token",
        ),
        RegistrationError::Provision(ProvisionError::Store(e)) => {
            log::warn!("registration: {e}");
            let mut r = error(
                503,
                "temporarily_unavailable",
                "the store cannot be reached; nothing was registered or changed",
            );
            r.headers
                .push((http::header::RETRY_AFTER, HeaderValue::from_static("1")));
            r
        }
        RegistrationError::Provision(e) => {
            log::error!("registration: {e}");
            error(
                500,
                "server_error",
                "the registration could not be completed",
            )
        }
    }
}

/// The JSON object of the body.
fn metadata(req: &TokenRequest<'_>) -> Result<Map<String, Value>, Reply> {
    let json = req
        .content_type
        .and_then(|c| std::str::from_utf8(c).ok())
        .is_some_and(|c| {
            c.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(error(
            400,
            "invalid_client_metadata",
            "client metadata is sent as application/json",
        ));
    }
    match serde_json::from_slice::<Value>(req.body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(error(
            400,
            "invalid_client_metadata",
            "the body must be a JSON object of client metadata",
        )),
    }
}

impl TokenService {
    pub(super) async fn registration(
        &self,
        id: Option<&ClientId>,
        req: &TokenRequest<'_>,
    ) -> Reply {
        let settings = self.catalog.load().registration.clone();
        if !settings.enabled {
            return Reply::not_found();
        }
        let base = format!("{}{REGISTER_PATH}", self.signer.issuer());
        let Ok(token) = bearer(req) else {
            return error(
                401,
                "invalid_token",
                "send the token as Authorization: Bearer <token>",
            );
        };
        let p = &self.provisioner;
        let result = match (id, req.method) {
            (None, &Method::POST) => {
                let meta = match metadata(req) {
                    Ok(m) => m,
                    Err(r) => return r,
                };
                match p.redeem(token, settings.open.as_ref()).await {
                    Ok(redeemed) => p.register(meta, redeemed, &base).await.map(|b| (201, b)),
                    Err(e) => Err(e),
                }
            }
            (Some(id), &Method::GET) => p
                .read_registration(id, token, &base)
                .await
                .map(|b| (200, b)),
            (Some(id), &Method::PUT) => {
                let meta = match metadata(req) {
                    Ok(m) => m,
                    Err(r) => return r,
                };
                p.update_registration(id, token, meta, &base)
                    .await
                    .map(|b| (200, b))
            }
            (Some(id), &Method::DELETE) => {
                return match p.delete_registration(id, token).await {
                    Ok(()) => {
                        let mut r = Reply::empty();
                        r.status = 204;
                        r
                    }
                    Err(e) => refused(e),
                };
            }
            (None, _) => {
                let mut r = error(405, "invalid_request", "register with POST");
                r.headers.push((ALLOW, HeaderValue::from_static("POST")));
                return r;
            }
            (Some(_), _) => {
                let mut r = error(405, "invalid_request", "use GET, PUT or DELETE");
                r.headers
                    .push((ALLOW, HeaderValue::from_static("GET, PUT, DELETE")));
                return r;
            }
        };
        match result {
            Ok((status, body)) => answer(status, &body),
            Err(e) => refused(e),
        }
    }
}
