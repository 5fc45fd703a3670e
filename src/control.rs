//! The admin API: provisioning at run time on its own listener (loopback by default,
//! never the public one), for admin keys of `admin.keys` only. Every call is checked
//! against the key's scopes, limited against guessing, and written to the audit log.
//! What it changes is kept in the store ([`crate::provision`]) and in force on every node
//! at once. Its OpenAPI 3.1 description is served at `/openapi.json`.

mod audit;
pub mod cli;
mod routes;
mod views;

use crate::config::{AdminKey, AdminScope, AdminSettings, ClientCertMode};
use crate::domain::clock::rfc3339;
use crate::provision::Provisioner;
use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest request body taken (a credential is a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;
/// How long reading a body may take.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("control/openapi.json");

/// An answer, with what the audit log says of it.
pub struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub target: Option<String>,
    pub version: Option<u64>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            headers: Vec::new(),
            target: None,
            version: None,
        }
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            body: None,
            headers: Vec::new(),
            target: None,
            version: None,
        }
    }

    /// An error: `{"error": code, "error_description": text}`.
    pub fn error(status: u16, code: &str, text: impl std::fmt::Display) -> Self {
        Self::json(
            status,
            json!({ "error": code, "error_description": text.to_string() }),
        )
    }

    pub fn about(mut self, target: &str, version: Option<u64>) -> Self {
        self.target = Some(target.to_string());
        self.version = version;
        if let Some(v) = version
            && let Ok(h) = HeaderValue::from_str(&format!("\"{v}\""))
        {
            self.headers.push((http::header::ETAG, h));
        }
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// Failed key checks from one address.
struct Failures {
    count: u32,
    since: Instant,
}

pub struct Control {
    pub(crate) provisioner: Arc<Provisioner>,
    keys: Vec<AdminKey>,
    audit: audit::Audit,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    window: Duration,
    max_failures: u32,
    /// The admin listener requires a client certificate chained to its CA.
    require_chain: bool,
    pub(crate) issuer: String,
}

/// Why the admin API cannot start.
#[derive(Debug, thiserror::Error)]
#[error("admin.audit_log: cannot open {}: {source}", path.display())]
pub struct AuditError {
    path: std::path::PathBuf,
    source: std::io::Error,
}

impl Control {
    pub fn new(
        settings: &AdminSettings,
        provisioner: Arc<Provisioner>,
        limits: &crate::config::LimitSettings,
        issuer: &str,
    ) -> Result<Self, AuditError> {
        let audit = audit::Audit::open(&settings.audit_log).map_err(|source| AuditError {
            path: settings.audit_log.clone(),
            source,
        })?;
        Ok(Self {
            provisioner,
            keys: settings.keys.clone(),
            audit,
            failures: Mutex::default(),
            window: limits.window,
            max_failures: limits.per_account,
            require_chain: settings.tls.as_ref().is_some_and(|t| {
                t.client_ca.is_some() && t.client_certificates == ClientCertMode::Require
            }),
            issuer: issuer.to_string(),
        })
    }

    /// The key presented as `Authorization: Bearer <key>`, if it is one of ours.
    fn key(&self, session: &ServerSession) -> Option<&AdminKey> {
        let value = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let (scheme, key) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let digest = crate::store::digest(key.trim());
        self.keys.iter().find(|k| k.digest == digest)
    }

    /// Whether `ip` has guessed too often; counts this guess when `failed`.
    fn limited(&self, ip: Option<IpAddr>, failed: bool) -> bool {
        let Some(ip) = ip else { return false };
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, f| now.duration_since(f.since) < self.window);
        let entry = map.entry(ip).or_insert(Failures {
            count: 0,
            since: now,
        });
        if failed {
            entry.count = entry.count.saturating_add(1);
        }
        entry.count >= self.max_failures
    }

    fn chain_ok(&self, session: &ServerSession) -> bool {
        if !self.require_chain {
            return true;
        }
        session
            .digest()
            .and_then(|d| d.ssl_digest.as_deref())
            .and_then(|d| {
                d.extension
                    .get::<crate::domain::certificate::ClientCertificate>()
            })
            .is_some_and(|c| c.chain_verified)
    }

    async fn body(session: &mut ServerSession) -> Result<Bytes, Reply> {
        let declared = session
            .req_header()
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_BODY) {
            return Err(too_large());
        }
        let mut out = Vec::new();
        let read = async {
            loop {
                match session.read_request_body().await {
                    Ok(Some(chunk)) => {
                        if out.len() + chunk.len() > MAX_BODY {
                            return Err(too_large());
                        }
                        out.extend_from_slice(&chunk);
                    }
                    Ok(None) => return Ok(()),
                    Err(_) => {
                        return Err(Reply::error(
                            400,
                            "invalid_request",
                            "the body cannot be read",
                        ));
                    }
                }
            }
        };
        match tokio::time::timeout(BODY_TIMEOUT, read).await {
            Ok(Ok(())) => Ok(Bytes::from(out)),
            Ok(Err(r)) => Err(r),
            Err(_) => Err(Reply::error(
                408,
                "invalid_request",
                "the body was not sent in time",
            )),
        }
    }

    async fn handle(
        &self,
        session: &mut ServerSession,
        ip: Option<IpAddr>,
    ) -> (Reply, Option<&AdminKey>) {
        let req = session.req_header();
        let path = req.uri.path().to_string();
        if path == "/openapi.json" && req.method == http::Method::GET {
            let body = serde_json::from_str(OPENAPI).unwrap_or(Value::Null);
            return (Reply::json(200, body), None);
        }
        if !self.chain_ok(session) {
            return (
                Reply::error(
                    401,
                    "invalid_client",
                    "a client certificate from the admin CA is required",
                ),
                None,
            );
        }
        if self.limited(ip, false) {
            return (
                Reply::error(429, "too_many_requests", "too many failed key checks; wait").header(
                    http::header::RETRY_AFTER,
                    HeaderValue::from(self.window.as_secs()),
                ),
                None,
            );
        }
        let Some(key) = self.key(session) else {
            let had = session
                .req_header()
                .headers
                .contains_key(http::header::AUTHORIZATION);
            if had {
                self.limited(ip, true);
            }
            return (
                Reply::error(
                    401,
                    "invalid_token",
                    "an admin key is required (Authorization: Bearer <key>)",
                )
                .header(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tollgate-admin\""),
                ),
                None,
            );
        };
        let body = match Self::body(session).await {
            Ok(b) => b,
            Err(r) => return (r, Some(key)),
        };
        let call = routes::Call::new(session.req_header(), &body, key);
        let reply = match call {
            Ok(call) => self.route(call).await,
            Err(r) => r,
        };
        (reply, Some(key))
    }
}

fn too_large() -> Reply {
    Reply::error(
        413,
        "invalid_request",
        format!("the body is larger than {MAX_BODY} bytes"),
    )
}

/// Whether `key` may act with `scope`.
pub(crate) fn allowed(key: &AdminKey, scope: AdminScope) -> Result<(), Reply> {
    if key.scopes.contains(&scope) {
        Ok(())
    } else {
        Err(Reply::error(
            403,
            "insufficient_scope",
            format!(
                "the key `{}` lacks the scope `{}`",
                key.name,
                scope.as_str()
            ),
        ))
    }
}

#[async_trait]
impl ServeHttp for Control {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let method = session.req_header().method.to_string();
        let path = session.req_header().uri.path().to_string();
        let (reply, key) = self.handle(session, ip).await;
        self.audit.write(&audit::Line {
            time: rfc3339(crate::domain::clock::unix_now()),
            key: key.map(|k| k.name.as_str()),
            client: ip.map_or_else(|| "-".into(), |i| i.to_string()),
            method: &method,
            path: &path,
            status: reply.status,
            target: reply.target.as_deref(),
            version: reply.version,
        });
        let body = reply
            .body
            .as_ref()
            .and_then(|b| serde_json::to_vec_pretty(b).ok())
            .unwrap_or_default();
        let mut resp = Response::new(Vec::new());
        *resp.status_mut() =
            StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = resp.headers_mut();
        h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        if reply.body.is_some() {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        for (n, v) in reply.headers {
            h.append(n, v);
        }
        *resp.body_mut() = body;
        resp
    }
}
