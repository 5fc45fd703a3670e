//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592): client
//! metadata becomes a provisioned credential, checked as a file credential is; what it
//! may call comes from the initial access token the admin API issued (or from
//! `registration.open`); the registration access token is kept only as a SHA-256.

use super::credentials::{NewCredential, random_token};
use super::{CredentialDoc, Origin, ProvisionError, Provisioner, RegistrationDoc};
use crate::config::GrantFile;
use crate::domain::clock::unix_now;
use crate::domain::hex;
use crate::store::{Consumed, Ephemeral, RecordKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::time::Duration;

mod metadata;

use metadata::{Asked, spec};

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

/// What an initial access token (or open registration) grants, and the token to use up.
pub struct Redeemed {
    grant: GrantFile,
    single_use: Option<crate::store::Digest>,
}

/// An initial access token as stored.
#[derive(Debug, Serialize, Deserialize)]
struct InitialAccess {
    grant: GrantFile,
    reusable: bool,
    by: String,
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

    /// What a registration presenting `token` may be granted. A single-use token is used
    /// up by [`Provisioner::register`], once the metadata has passed: a client whose
    /// metadata is refused may correct it and try again with the same token.
    pub async fn redeem(
        &self,
        token: Option<&str>,
        open: Option<&GrantFile>,
    ) -> Result<Redeemed, RegistrationError> {
        let Some(token) = token else {
            return open
                .cloned()
                .map(|grant| Redeemed {
                    grant,
                    single_use: None,
                })
                .ok_or(RegistrationError::InvalidToken(
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
        Ok(Redeemed {
            grant: access.grant,
            single_use: (!access.reusable).then_some(key),
        })
    }

    /// Use up a single-use initial access token: exactly one registration does.
    async fn use_up(&self, key: &crate::store::Digest) -> Result<(), RegistrationError> {
        match self
            .store
            .consume_ephemeral(Ephemeral::InitialAccessToken, key, unix_now())
            .await
            .map_err(ProvisionError::from)?
        {
            Consumed::First(_) => Ok(()),
            Consumed::Again(_) | Consumed::Missing => Err(RegistrationError::InvalidToken(
                "the initial access token was used already",
            )),
        }
    }

    /// Register a client (RFC 7591 §3.2.1): the response body, with its secret and
    /// registration access token shown only now.
    pub async fn register(
        &self,
        meta: Map<String, Value>,
        redeemed: Redeemed,
        base: &str,
    ) -> Result<Value, RegistrationError> {
        let Redeemed { grant, single_use } = redeemed;
        let client_id = random_token("tgc_")?.chars().take(26).collect::<String>();
        let Asked { spec, registered } = spec(&client_id, &meta, &grant)?;
        let now = unix_now();
        self.check(
            &client_id,
            &super::credentials::doc_with(
                &spec,
                &Origin::Registration,
                "registration",
                now,
                CredentialDoc::wants_secret(&spec).then_some(crate::config::PLACEHOLDER_HASH),
            ),
        )
        .map_err(metadata_error)?;
        if let Some(key) = single_use {
            self.use_up(&key).await?;
        }
        let (access_token, digest) = new_access_token()?;
        let created = self
            .create_credential(NewCredential {
                spec,
                origin: Origin::Registration,
                by: "registration".into(),
                registration: Some(RegistrationDoc {
                    access_token_sha256: digest,
                    metadata: registered,
                    grant,
                    issued_at: now,
                }),
                subscription: None,
            })
            .await
            .map_err(metadata_error)?;
        let mut body = with_token(response(&client_id, &created.doc, base), access_token);
        if let (Value::Object(m), Some(s)) = (&mut body, created.secret) {
            m.insert("client_secret".into(), json!(s));
            m.insert("client_secret_expires_at".into(), json!(0));
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
        let (version, _) = self.registered(id, token).await?;
        // Only the token's digest is kept, so the answer carries a new one (RFC 7592 §3
        // requires one; §2.1: the client then discards the previous).
        let (fresh, digest) = new_access_token()?;
        let (_, doc, ()) = self
            .modify(id, Some(version), "registration", move |d| {
                if let Some(r) = d.registration.as_mut() {
                    r.access_token_sha256 = digest;
                }
                Ok(())
            })
            .await?;
        Ok(with_token(response(id, &doc, base), fresh))
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
        // §2.2: a client_secret sent along must be the client's.
        match meta.get("client_secret") {
            None => {}
            Some(Value::String(s)) => {
                let now = unix_now();
                let hashes: Vec<String> = doc.live_secrets(now).map(|h| h.hash.clone()).collect();
                let secret = crate::domain::secret::Secret::new(s.clone());
                let matches = tokio::task::spawn_blocking(move || {
                    hashes
                        .iter()
                        .any(|h| crate::domain::secret::verify_secret(secret.expose(), h))
                })
                .await
                .unwrap_or(false);
                if !matches {
                    return Err(RegistrationError::InvalidMetadata(
                        "client_secret: not the client's secret (it is not changed here)".into(),
                    ));
                }
            }
            Some(_) => {
                return Err(RegistrationError::InvalidMetadata(
                    "client_secret: a string".into(),
                ));
            }
        }
        if let Some(keys) = doc.spec.get("api_keys") {
            spec.insert("api_keys".into(), keys.clone());
        }
        let (fresh, digest) = new_access_token()?;
        let (_, updated, ()) = self
            .modify(id, Some(version), "registration", move |d| {
                d.spec = spec;
                if let Some(r) = d.registration.as_mut() {
                    r.metadata = registered;
                    r.access_token_sha256 = digest;
                }
                Ok(())
            })
            .await
            .map_err(metadata_error)?;
        Ok(with_token(response(id, &updated, base), fresh))
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

/// A new registration access token and its digest.
fn new_access_token() -> Result<(String, String), ProvisionError> {
    let token = random_token("tgr_")?;
    let digest = hex(&crate::store::digest(&token));
    Ok((token, digest))
}

fn with_token(mut body: Value, token: String) -> Value {
    if let Value::Object(m) = &mut body {
        m.insert("registration_access_token".into(), json!(token));
    }
    body
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
