//! The admin API's operations, by method and path under `/v1`.

use super::views::{catalog, credential_view, subscription_view};
use super::{Control, Reply, allowed};
use crate::config::{AdminKey, AdminScope};
use crate::provision::credentials::NewCredential;
use crate::provision::subscriptions::NewSubscription;
use crate::provision::{Origin, ProvisionError};
use crate::store::RecordKind;
use http::Method;
use pingora::http::RequestHeader;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// A parsed call.
pub struct Call<'a> {
    method: Method,
    /// The path after `/v1`, percent-decoded.
    segments: Vec<String>,
    query: Vec<(String, String)>,
    body: &'a [u8],
    key: &'a AdminKey,
    /// `If-Match: "<version>"`.
    if_match: Option<u64>,
}

use crate::domain::endpoint::percent_decoded as decode;

impl<'a> Call<'a> {
    pub fn new(req: &RequestHeader, body: &'a [u8], key: &'a AdminKey) -> Result<Self, Reply> {
        let path = req.uri.path();
        let Some(rest) = path.strip_prefix("/v1/") else {
            return Err(not_found());
        };
        let segments = rest
            .split('/')
            .map(decode)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Reply::error(400, "invalid_request", "the path has a bad escape"))?;
        let query = req
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                Some((decode(k)?, decode(&v.replace('+', " "))?))
            })
            .collect();
        let if_match = match req.headers.get(http::header::IF_MATCH) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| {
                        Reply::error(
                            400,
                            "invalid_request",
                            "If-Match names a version: the ETag of a read, e.g. \"12\"",
                        )
                    })?,
            ),
        };
        Ok(Self {
            method: req.method.clone(),
            segments,
            query,
            body,
            key,
            if_match,
        })
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as a JSON object (an empty body is `{}`).
    fn object(&self) -> Result<Map<String, Value>, Reply> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice::<Value>(self.body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(Reply::error(
                400,
                "invalid_request",
                "the body must be a JSON object",
            )),
            Err(e) => Err(Reply::error(
                400,
                "invalid_request",
                format!("the body is not JSON: {e}"),
            )),
        }
    }

    fn by(&self) -> String {
        format!("admin:{}", self.key.name)
    }
}

fn not_found() -> Reply {
    Reply::error(
        404,
        "not_found",
        "no such admin operation (see /openapi.json)",
    )
}

fn method_not_allowed(allow: &'static str) -> Reply {
    Reply::error(405, "method_not_allowed", format!("use {allow}"))
        .header(http::header::ALLOW, http::HeaderValue::from_static(allow))
}

/// The answer to a provisioning error.
pub(super) fn failed(e: ProvisionError) -> Reply {
    match e {
        ProvisionError::Invalid(errs) => Reply::json(
            400,
            json!({
                "error": "invalid_request",
                "error_description": "the document fails validation",
                "errors": errs.iter().map(|e| json!({ "path": e.path, "message": e.message })).collect::<Vec<_>>(),
            }),
        ),
        e @ ProvisionError::NotFound(..) => Reply::error(404, "not_found", e),
        e @ ProvisionError::FileEntry(_) => Reply::error(409, "file_entry", e),
        e @ ProvisionError::Exists(..) => Reply::error(409, "conflict", e),
        e @ ProvisionError::Conflict(..) => Reply::error(409, "conflict", e),
        ProvisionError::Store(e) => {
            log::warn!("admin API: {e}");
            Reply::error(
                503,
                "temporarily_unavailable",
                "the store cannot be reached; nothing was changed",
            )
            .header(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            )
        }
        e @ (ProvisionError::NoRandomness
        | ProvisionError::Hash(_)
        | ProvisionError::Corrupt(..)) => {
            log::error!("admin API: {e}");
            Reply::error(500, "server_error", e)
        }
    }
}

fn overlap(body: &Map<String, Value>) -> Result<Duration, Reply> {
    match body.get("overlap") {
        None => Ok(Duration::from_secs(3600)),
        Some(Value::String(s)) => crate::config::parse_duration(s)
            .map_err(|e| Reply::error(400, "invalid_request", format!("overlap: {e}"))),
        Some(_) => Err(Reply::error(
            400,
            "invalid_request",
            "overlap: a duration such as \"1h\"",
        )),
    }
}

impl Control {
    pub(super) async fn route(&self, call: Call<'_>) -> Reply {
        let segs: Vec<&str> = call.segments.iter().map(String::as_str).collect();
        let result = match segs.as_slice() {
            ["credentials"] => self.credentials(&call).await,
            ["credentials", id] => self.credential(&call, id).await,
            ["credentials", id, action @ ("disable" | "enable")] => {
                self.switch(&call, id, *action == "disable").await
            }
            ["credentials", id, "secret"] => self.rotate(&call, id).await,
            ["credentials", id, "api-keys"] => self.api_keys(&call, id).await,
            ["credentials", id, "api-keys", name] => self.api_key(&call, id, name).await,
            ["subscriptions"] => self.subscriptions(&call).await,
            ["subscriptions", id] => self.subscription(&call, id).await,
            ["subscriptions", id, "credentials"] => self.subscription_credentials(&call, id).await,
            ["initial-access-tokens"] => self.initial_access_token(&call).await,
            ["catalog"] => match call.method {
                Method::GET => allowed(call.key, AdminScope::Read)
                    .map(|()| Reply::json(200, catalog(&self.provisioner))),
                _ => Err(method_not_allowed("GET")),
            },
            _ => Err(not_found()),
        };
        result.unwrap_or_else(|r| r)
    }

    async fn credentials(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        match call.method {
            Method::GET => {
                allowed(call.key, AdminScope::Read)?;
                let (page, next) = self.page(call, RecordKind::Credential);
                let items: Vec<Value> = page
                    .iter()
                    .filter_map(|(id, m)| {
                        credential_view(id, m.version, &m.doc, m.unserved.as_deref())
                    })
                    .collect();
                Ok(Reply::json(200, json!({ "items": items, "next": next })))
            }
            Method::POST => {
                allowed(call.key, AdminScope::CredentialsWrite)?;
                let spec = call.object()?;
                let created = self
                    .provisioner
                    .create_credential(NewCredential {
                        spec,
                        origin: Origin::Admin,
                        by: call.by(),
                        registration: None,
                        subscription: None,
                    })
                    .await
                    .map_err(failed)?;
                let id = created
                    .doc
                    .spec
                    .get("client_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                Ok(self.created_reply(&id, created))
            }
            _ => Err(method_not_allowed("GET, POST")),
        }
    }

    pub(super) fn created_reply(
        &self,
        id: &str,
        created: crate::provision::credentials::Created,
    ) -> Reply {
        let doc = serde_json::to_vec(&created.doc).unwrap_or_default();
        let mut view =
            credential_view(id, created.version, &doc, None).unwrap_or_else(|| json!({}));
        if let (Some(secret), Value::Object(m)) = (created.secret, &mut view) {
            m.insert("client_secret".into(), Value::String(secret));
        }
        Reply::json(201, view).about(id, Some(created.version))
    }

    async fn credential(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let p = &self.provisioner;
        match call.method {
            Method::GET => {
                allowed(call.key, AdminScope::Read)?;
                if let Some(view) = super::views::file_credential(p, id) {
                    return Ok(Reply::json(200, view).about(id, None));
                }
                let (version, doc) = p.credential(id).await.map_err(failed)?;
                Ok(self.doc_reply(id, version, &doc, 200))
            }
            Method::PUT => {
                allowed(call.key, AdminScope::CredentialsWrite)?;
                let spec = call.object()?;
                let (version, doc) = p
                    .replace_credential(id, spec, call.if_match, &call.by())
                    .await
                    .map_err(failed)?;
                Ok(self.doc_reply(id, version, &doc, 200))
            }
            Method::DELETE => {
                allowed(call.key, AdminScope::CredentialsWrite)?;
                let (_, doc) = p.credential(id).await.map_err(failed)?;
                if let Some(sub) = doc.subscription {
                    return Err(Reply::error(
                        409,
                        "conflict",
                        format!(
                            "`{id}` is the credential of subscription `{sub}`: delete the subscription"
                        ),
                    ));
                }
                p.delete_credential(id, call.if_match)
                    .await
                    .map_err(failed)?;
                Ok(Reply::empty(204).about(id, None))
            }
            _ => Err(method_not_allowed("GET, PUT, DELETE")),
        }
    }

    fn doc_reply(
        &self,
        id: &str,
        version: u64,
        doc: &crate::provision::CredentialDoc,
        status: u16,
    ) -> Reply {
        let bytes = serde_json::to_vec(doc).unwrap_or_default();
        let unserved = self
            .provisioner
            .mirrored(RecordKind::Credential, id)
            .and_then(|m| m.unserved);
        let view =
            credential_view(id, version, &bytes, unserved.as_deref()).unwrap_or_else(|| json!({}));
        Reply::json(status, view).about(id, Some(version))
    }

    /// One page of a list (`?limit=` 1-1000, default 100; `?after=` a name) and the
    /// `after` of the next page, if there is one.
    fn page(
        &self,
        call: &Call<'_>,
        kind: RecordKind,
    ) -> (Vec<(String, crate::provision::Mirrored)>, Option<String>) {
        let limit = call
            .query("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(100)
            .clamp(1, 1000);
        let after = call.query("after").unwrap_or_default();
        let mut page = self.provisioner.list(kind, after, limit + 1);
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        (page, next)
    }

    async fn switch(&self, call: &Call<'_>, id: &str, disable: bool) -> Result<Reply, Reply> {
        if call.method != Method::POST {
            return Err(method_not_allowed("POST"));
        }
        allowed(call.key, AdminScope::CredentialsWrite)?;
        let (version, doc) = self
            .provisioner
            .set_disabled(id, disable, call.if_match, &call.by())
            .await
            .map_err(failed)?;
        Ok(self.doc_reply(id, version, &doc, 200))
    }

    async fn rotate(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        if call.method != Method::POST {
            return Err(method_not_allowed("POST"));
        }
        allowed(call.key, AdminScope::CredentialsWrite)?;
        let overlap = overlap(&call.object()?)?;
        let (version, doc, secret) = self
            .provisioner
            .rotate_secret(id, overlap, call.if_match, &call.by())
            .await
            .map_err(failed)?;
        let mut r = self.doc_reply(id, version, &doc, 200);
        if let Some(Value::Object(m)) = &mut r.body {
            m.insert("client_secret".into(), Value::String(secret));
        }
        Ok(r)
    }

    async fn api_keys(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let p = &self.provisioner;
        match call.method {
            Method::GET => {
                allowed(call.key, AdminScope::Read)?;
                let (version, doc) = p.credential(id).await.map_err(failed)?;
                let names: Vec<Value> = doc
                    .spec
                    .get("api_keys")
                    .and_then(Value::as_array)
                    .map(|l| {
                        l.iter()
                            .filter_map(|k| k.get("name").cloned())
                            .map(|n| json!({ "name": n }))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Reply::json(200, json!({ "items": names })).about(id, Some(version)))
            }
            Method::POST => {
                allowed(call.key, AdminScope::CredentialsWrite)?;
                let body = call.object()?;
                let Some(name) = body.get("name").and_then(Value::as_str) else {
                    return Err(Reply::error(400, "invalid_request", "name: required"));
                };
                let (version, _, key) = p
                    .add_api_key(id, name, call.if_match, &call.by())
                    .await
                    .map_err(failed)?;
                Ok(Reply::json(
                    201,
                    json!({ "name": name, "api_key": key, "version": version }),
                )
                .about(id, Some(version)))
            }
            _ => Err(method_not_allowed("GET, POST")),
        }
    }

    async fn api_key(&self, call: &Call<'_>, id: &str, name: &str) -> Result<Reply, Reply> {
        if call.method != Method::DELETE {
            return Err(method_not_allowed("DELETE"));
        }
        allowed(call.key, AdminScope::CredentialsWrite)?;
        let (version, _) = self
            .provisioner
            .delete_api_key(id, name, call.if_match, &call.by())
            .await
            .map_err(failed)?;
        Ok(Reply::empty(204).about(id, Some(version)))
    }

    async fn subscriptions(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        let p = &self.provisioner;
        match call.method {
            Method::GET => {
                allowed(call.key, AdminScope::Read)?;
                let (page, next) = self.page(call, RecordKind::Subscription);
                let items: Vec<Value> = page
                    .iter()
                    .filter_map(|(_, m)| serde_json::from_slice(&m.doc).ok())
                    .map(|d| subscription_view(&d))
                    .collect();
                Ok(Reply::json(200, json!({ "items": items, "next": next })))
            }
            Method::POST => {
                allowed(call.key, AdminScope::SubscriptionsWrite)?;
                let new: NewSubscription = serde_json::from_value(Value::Object(call.object()?))
                    .map_err(|e| Reply::error(400, "invalid_request", e))?;
                let (version, sub, created) = p
                    .create_subscription(new, &call.by())
                    .await
                    .map_err(failed)?;
                let mut view = subscription_view(&sub);
                if let Value::Object(m) = &mut view {
                    m.insert(
                        "credentials".into(),
                        self.subscription_credential(&sub, created.secret),
                    );
                }
                Ok(Reply::json(201, view).about(&sub.id, Some(version)))
            }
            _ => Err(method_not_allowed("GET, POST")),
        }
    }

    /// What seed 002's `GET /v1/subscriptions/{id}/credentials` returns: the client id,
    /// the token endpoints, and the secret only when just created.
    fn subscription_credential(
        &self,
        sub: &crate::provision::SubscriptionDoc,
        secret: Option<String>,
    ) -> Value {
        let catalog = self.provisioner.live().load();
        let apis: Vec<String> = match (&sub.api, &sub.product) {
            (Some(a), _) => vec![a.clone()],
            (_, Some(p)) => catalog
                .provision
                .product(p)
                .map(<[String]>::to_vec)
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let endpoints: Vec<String> = apis
            .iter()
            .filter_map(|a| catalog.registry.api(a))
            .map(|a| {
                format!(
                    "{}{}{}",
                    self.issuer,
                    a.prefix.trim_end_matches('/'),
                    crate::domain::endpoint::API_TOKEN_SUFFIX
                )
            })
            .collect();
        let mut v = json!({
            "client_id": sub.credential,
            "token_endpoints": endpoints,
        });
        if let (Some(s), Value::Object(m)) = (secret, &mut v) {
            m.insert("client_secret".into(), Value::String(s));
        }
        v
    }

    async fn subscription(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        let p = &self.provisioner;
        match call.method {
            Method::GET => {
                allowed(call.key, AdminScope::Read)?;
                let (version, doc) = p.subscription(id).await.map_err(failed)?;
                Ok(Reply::json(200, subscription_view(&doc)).about(id, Some(version)))
            }
            Method::DELETE => {
                allowed(call.key, AdminScope::SubscriptionsWrite)?;
                p.delete_subscription(id, call.if_match)
                    .await
                    .map_err(failed)?;
                Ok(Reply::empty(204).about(id, None))
            }
            _ => Err(method_not_allowed("GET, DELETE")),
        }
    }

    async fn subscription_credentials(&self, call: &Call<'_>, id: &str) -> Result<Reply, Reply> {
        if call.method != Method::GET {
            return Err(method_not_allowed("GET"));
        }
        allowed(call.key, AdminScope::Read)?;
        let (version, doc) = self.provisioner.subscription(id).await.map_err(failed)?;
        Ok(Reply::json(200, self.subscription_credential(&doc, None)).about(id, Some(version)))
    }

    async fn initial_access_token(&self, call: &Call<'_>) -> Result<Reply, Reply> {
        if call.method != Method::POST {
            return Err(method_not_allowed("POST"));
        }
        allowed(call.key, AdminScope::RegistrationWrite)?;
        let mut body = call.object()?;
        let lifetime = match body.remove("expires_in") {
            None => Duration::from_secs(86_400),
            Some(Value::String(s)) => crate::config::parse_duration(&s)
                .map_err(|e| Reply::error(400, "invalid_request", format!("expires_in: {e}")))?,
            Some(_) => {
                return Err(Reply::error(
                    400,
                    "invalid_request",
                    "expires_in: a duration such as \"1h\"",
                ));
            }
        };
        let reusable = match body.remove("reusable") {
            None => false,
            Some(Value::Bool(b)) => b,
            Some(_) => {
                return Err(Reply::error(
                    400,
                    "invalid_request",
                    "reusable: true or false",
                ));
            }
        };
        let grant: crate::config::GrantFile = serde_json::from_value(Value::Object(body))
            .map_err(|e| Reply::error(400, "invalid_request", e))?;
        let (token, expires_at) = self
            .provisioner
            .initial_access_token(grant, lifetime, reusable, &call.by())
            .await
            .map_err(failed)?;
        Ok(Reply::json(
            201,
            json!({
                "initial_access_token": token,
                "expires_at": crate::domain::clock::rfc3339(expires_at),
                "reusable": reusable,
                "registration_endpoint": format!("{}{}", self.issuer, crate::domain::endpoint::REGISTER_PATH),
            }),
        ))
    }
}
