//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592): client
//! metadata becomes a provisioned credential, checked as a file credential is; what it
//! may call comes from the initial access token the admin API issued (or from
//! `registration.open`); the registration access token is kept only as a SHA-256.

use super::credentials::{NewCredential, random_token};
use super::{CredentialDoc, Origin, ProvisionError, Provisioner, RegistrationDoc};
use crate::config::GrantFile;
use crate::domain::clock::unix_now;
use crate::store::{Consumed, Ephemeral, RecordKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// Why a registration call was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// No, an unknown, expired or used token (401 `invalid_token`).
    #[error("{0}")]
    InvalidToken(&'static str),
    /// RFC 7591 §3.2.2 `invalid_client_metadata`.
    #[error("{0}")]
    InvalidMetadata(String),
    /// RFC 7591 §3.2.2 `invalid_redirect_uri`.
    #[error("{0}")]
    InvalidRedirectUri(String),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
}

/// An initial access token as stored.
#[derive(Debug, Serialize, Deserialize)]
struct InitialAccess {
    grant: GrantFile,
    reusable: bool,
    by: String,
}

/// Metadata the gateway keeps and echoes but does not act on.
const KEPT: &[&str] = &[
    "client_uri",
    "logo_uri",
    "contacts",
    "tos_uri",
    "policy_uri",
    "software_id",
    "software_version",
];

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn strings(meta: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, RegistrationError> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| RegistrationError::InvalidMetadata(format!("{key}: a list of strings"))),
        Some(_) => Err(RegistrationError::InvalidMetadata(format!(
            "{key}: a list of strings"
        ))),
    }
}

fn text<'m>(meta: &'m Map<String, Value>, key: &str) -> Result<Option<&'m str>, RegistrationError> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(RegistrationError::InvalidMetadata(format!(
            "{key}: a string"
        ))),
    }
}

/// What client metadata asks for: the credential's settings, and the metadata as
/// registered (the server's defaults filled in).
struct Asked {
    spec: Map<String, Value>,
    registered: Map<String, Value>,
}

/// The credential settings that client `metadata` asks for under `grant`.
fn spec(
    client_id: &str,
    meta: &Map<String, Value>,
    grant: &GrantFile,
) -> Result<Asked, RegistrationError> {
    let method = text(meta, "token_endpoint_auth_method")?.unwrap_or("client_secret_basic");
    if !matches!(
        method,
        "client_secret_basic" | "client_secret_post" | "none"
    ) {
        return Err(RegistrationError::InvalidMetadata(format!(
            "token_endpoint_auth_method: `{method}` is not offered (client_secret_basic, client_secret_post, none)"
        )));
    }
    let redirect_uris = strings(meta, "redirect_uris")?.unwrap_or_default();
    let grant_types = strings(meta, "grant_types")?.unwrap_or_else(|| {
        // RFC 7591 §2: authorization_code when none are named.
        vec!["authorization_code".to_string()]
    });
    let response_types = strings(meta, "response_types")?.unwrap_or_else(|| {
        if grant_types.iter().any(|g| g == "authorization_code") {
            vec!["code".to_string()]
        } else {
            Vec::new()
        }
    });
    let code = grant_types.iter().any(|g| g == "authorization_code");
    if code != response_types.iter().any(|r| r == "code")
        || response_types.iter().any(|r| r != "code")
    {
        return Err(RegistrationError::InvalidMetadata(
            "response_types: `code` goes with the authorization_code grant, and nothing else is offered".into(),
        ));
    }
    if code && redirect_uris.is_empty() {
        return Err(RegistrationError::InvalidRedirectUri(
            "redirect_uris: the authorization_code grant needs at least one".into(),
        ));
    }
    if code && grant.user_pool.is_none() {
        return Err(RegistrationError::InvalidMetadata(
            "grant_types: authorization_code is not offered to clients registered with this token (it names no user pool)".into(),
        ));
    }
    let refresh = grant_types.iter().any(|g| g == "refresh_token");
    let roles: Vec<String> = match text(meta, "scope")? {
        None => grant.roles.clone(),
        Some(s) => s
            .split(' ')
            .filter(|r| !r.is_empty())
            .filter(|r| grant.roles.iter().any(|g| g == r))
            .map(str::to_string)
            .collect(),
    };
    let mut out = Map::new();
    out.insert("client_id".into(), json!(client_id));
    out.insert("acl".into(), json!(grant.acl));
    out.insert("products".into(), json!(grant.products));
    out.insert("roles".into(), json!(roles));
    out.insert(
        "grant_types".into(),
        json!(
            grant_types
                .iter()
                .filter(|g| *g != "refresh_token")
                .collect::<Vec<_>>()
        ),
    );
    if refresh {
        out.insert("token".into(), json!({ "refresh": true }));
    }
    if let Some(pool) = &grant.user_pool
        && code
    {
        out.insert("user_pool".into(), json!(pool));
    }
    out.insert("token_endpoint_auth_method".into(), json!(method));
    if !redirect_uris.is_empty() {
        out.insert("redirect_uris".into(), json!(redirect_uris));
    }
    if let Some(p) = strings(meta, "post_logout_redirect_uris")? {
        out.insert("post_logout_redirect_uris".into(), json!(p));
    }
    if let Some(n) = text(meta, "client_name")? {
        out.insert("client_name".into(), json!(n));
    }
    match meta.get("dpop_bound_access_tokens") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => {
            out.insert("dpop_bound_access_tokens".into(), json!(b));
        }
        Some(_) => {
            return Err(RegistrationError::InvalidMetadata(
                "dpop_bound_access_tokens: true or false".into(),
            ));
        }
    }
    let mut registered = Map::new();
    for key in KEPT {
        if let Some(v) = meta.get(*key) {
            registered.insert((*key).into(), v.clone());
        }
    }
    registered.insert("redirect_uris".into(), json!(redirect_uris));
    registered.insert("grant_types".into(), json!(grant_types));
    registered.insert("response_types".into(), json!(response_types));
    registered.insert("token_endpoint_auth_method".into(), json!(method));
    registered.insert("scope".into(), json!(roles.join(" ")));
    for key in [
        "client_name",
        "post_logout_redirect_uris",
        "dpop_bound_access_tokens",
    ] {
        if let Some(v) = meta.get(key).filter(|v| !v.is_null()) {
            registered.insert(key.into(), v.clone());
        }
    }
    Ok(Asked {
        spec: out,
        registered,
    })
}

/// Validation errors of the credential, as RFC 7591 names them.
fn metadata_error(e: ProvisionError) -> RegistrationError {
    match e {
        ProvisionError::Invalid(errs) => {
            let text = errs
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            if errs.iter().any(|e| e.path.starts_with("redirect_uris")) {
                RegistrationError::InvalidRedirectUri(text)
            } else {
                RegistrationError::InvalidMetadata(text)
            }
        }
        other => RegistrationError::Provision(other),
    }
}

impl Provisioner {
    /// A new initial access token granting `grant`; usable once unless `reusable`.
    pub async fn initial_access_token(
        &self,
        grant: GrantFile,
        lifetime: Duration,
        reusable: bool,
        by: &str,
    ) -> Result<(String, i64), ProvisionError> {
        let check = json!({
            "client_id": "registration-check",
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"],
            "redirect_uris": ["https://registration.check/cb"],
            "acl": grant.acl, "products": grant.products, "roles": grant.roles,
            "user_pool": grant.user_pool.clone().unwrap_or_default(),
        });
        let catalog = self.live.load();
        let mut errs = match catalog
            .provision
            .check_credential(&check, "request body", "")
        {
            Ok(_) => Vec::new(),
            Err(errs) => errs,
        };
        // The check document's own choices are not the caller's to fix.
        errs.retain(|e| {
            !matches!(
                e.path.as_str(),
                "client_id" | "redirect_uris" | "grant_types"
            ) && (grant.user_pool.is_some() || e.path != "user_pool")
        });
        if !errs.is_empty() {
            return Err(ProvisionError::Invalid(errs));
        }
        let token = random_token("tgi_")?;
        let expires_at = unix_now().saturating_add(lifetime.as_secs() as i64);
        let record = serde_json::to_vec(&InitialAccess {
            grant,
            reusable,
            by: by.to_string(),
        })
        .map_err(|e| ProvisionError::Corrupt("initial access token", e.to_string()))?;
        self.store
            .put_ephemeral(
                Ephemeral::InitialAccessToken,
                crate::store::digest(&token),
                record,
                expires_at,
            )
            .await?;
        Ok((token, expires_at))
    }

    /// What a registration presenting `token` may be granted.
    pub async fn redeem(
        &self,
        token: Option<&str>,
        open: Option<&GrantFile>,
    ) -> Result<GrantFile, RegistrationError> {
        let Some(token) = token else {
            return open.cloned().ok_or(RegistrationError::InvalidToken(
                "registration needs an initial access token",
            ));
        };
        let key = crate::store::digest(token);
        let now = unix_now();
        let Some(bytes) = self
            .store
            .get_ephemeral(Ephemeral::InitialAccessToken, &key, now)
            .await
            .map_err(ProvisionError::from)?
        else {
            return Err(RegistrationError::InvalidToken(
                "the initial access token is unknown or expired",
            ));
        };
        let access: InitialAccess = serde_json::from_slice(&bytes)
            .map_err(|e| ProvisionError::Corrupt("initial access token", e.to_string()))?;
        if !access.reusable {
            match self
                .store
                .consume_ephemeral(Ephemeral::InitialAccessToken, &key, now)
                .await
                .map_err(ProvisionError::from)?
            {
                Consumed::First(_) => {}
                Consumed::Again(_) | Consumed::Missing => {
                    return Err(RegistrationError::InvalidToken(
                        "the initial access token was used already",
                    ));
                }
            }
        }
        Ok(access.grant)
    }

    /// Register a client (RFC 7591 §3.2.1): the response body, with its secret and
    /// registration access token shown only now.
    pub async fn register(
        &self,
        meta: Map<String, Value>,
        grant: GrantFile,
        base: &str,
    ) -> Result<Value, RegistrationError> {
        let client_id = random_token("tgc_")?.chars().take(26).collect::<String>();
        let Asked { spec, registered } = spec(&client_id, &meta, &grant)?;
        let access_token = random_token("tgr_")?;
        let now = unix_now();
        let created = self
            .create_credential(NewCredential {
                spec,
                origin: Origin::Registration,
                by: "registration".into(),
                registration: Some(RegistrationDoc {
                    access_token_sha256: hex(&crate::store::digest(&access_token)),
                    metadata: registered,
                    grant,
                    issued_at: now,
                }),
                subscription: None,
            })
            .await
            .map_err(metadata_error)?;
        let mut body = response(&client_id, &created.doc, base);
        if let Value::Object(m) = &mut body {
            m.insert("registration_access_token".into(), json!(access_token));
            if let Some(s) = created.secret {
                m.insert("client_secret".into(), json!(s));
                m.insert("client_secret_expires_at".into(), json!(0));
            }
        }
        Ok(body)
    }

    /// The registered client `id`, for the holder of its registration access token.
    async fn registered(
        &self,
        id: &str,
        token: Option<&str>,
    ) -> Result<(u64, CredentialDoc), RegistrationError> {
        let refused = RegistrationError::InvalidToken(
            "the registration access token is not valid for this client",
        );
        let token = token.ok_or(RegistrationError::InvalidToken(
            "a registration access token is required",
        ))?;
        let (version, doc) = match self.read::<CredentialDoc>(RecordKind::Credential, id).await {
            Ok(found) => found,
            // An unknown client and a wrong token look the same (RFC 7592 §3).
            Err(ProvisionError::NotFound(..)) => return Err(refused),
            Err(e) => return Err(e.into()),
        };
        let expected = doc
            .registration
            .as_ref()
            .map(|r| r.access_token_sha256.as_str());
        if expected != Some(hex(&crate::store::digest(token)).as_str()) {
            return Err(refused);
        }
        Ok((version, doc))
    }

    /// RFC 7592 §2.1: read.
    pub async fn read_registration(
        &self,
        id: &str,
        token: Option<&str>,
        base: &str,
    ) -> Result<Value, RegistrationError> {
        let (_, doc) = self.registered(id, token).await?;
        Ok(response(id, &doc, base))
    }

    /// RFC 7592 §2.2: replace the metadata (the grant stays what registration gave).
    pub async fn update_registration(
        &self,
        id: &str,
        token: Option<&str>,
        meta: Map<String, Value>,
        base: &str,
    ) -> Result<Value, RegistrationError> {
        let (version, doc) = self.registered(id, token).await?;
        if meta.get("client_id").and_then(Value::as_str) != Some(id) {
            return Err(RegistrationError::InvalidMetadata(
                "client_id: must be the registered client's id".into(),
            ));
        }
        for key in [
            "registration_access_token",
            "registration_client_uri",
            "client_secret_expires_at",
            "client_id_issued_at",
        ] {
            if meta.contains_key(key) {
                return Err(RegistrationError::InvalidMetadata(format!(
                    "{key}: set by the server, not sent (RFC 7592 §2.2)"
                )));
            }
        }
        let Some(reg) = doc.registration.clone() else {
            return Err(RegistrationError::InvalidToken("not a registered client"));
        };
        let Asked {
            mut spec,
            registered,
        } = spec(id, &meta, &reg.grant)?;
        if CredentialDoc::wants_secret(&doc.spec) != CredentialDoc::wants_secret(&spec) {
            return Err(RegistrationError::InvalidMetadata(
                "token_endpoint_auth_method: a client with a secret stays one, and a public client public".into(),
            ));
        }
        if let Some(keys) = doc.spec.get("api_keys") {
            spec.insert("api_keys".into(), keys.clone());
        }
        let (_, updated, ()) = self
            .modify(id, Some(version), "registration", move |d| {
                d.spec = spec;
                if let Some(r) = d.registration.as_mut() {
                    r.metadata = registered;
                }
                Ok(())
            })
            .await
            .map_err(metadata_error)?;
        Ok(response(id, &updated, base))
    }

    /// RFC 7592 §2.3: deregister (its tokens revoked on every node).
    pub async fn delete_registration(
        &self,
        id: &str,
        token: Option<&str>,
    ) -> Result<(), RegistrationError> {
        let (version, _) = self.registered(id, token).await?;
        self.delete_credential(id, Some(version)).await?;
        Ok(())
    }
}

/// The registration response (RFC 7591 §3.2.1, RFC 7592 §3) of a stored client.
fn response(id: &str, doc: &CredentialDoc, base: &str) -> Value {
    let mut m = doc
        .registration
        .as_ref()
        .map(|r| r.metadata.clone())
        .unwrap_or_default();
    m.insert("client_id".into(), json!(id));
    m.insert("client_id_issued_at".into(), json!(doc.created_at));
    m.insert(
        "registration_client_uri".into(),
        json!(format!("{base}/{}", id)),
    );
    Value::Object(m)
}
