//! Credentials: create (the secret shown once, stored as an argon2 hash), replace,
//! disable, rotate the secret with an overlap, API keys, delete (which revokes every
//! token of the credential on every node).

use super::{
    CredentialDoc, Origin, ProvisionError, Provisioner, RegistrationDoc, SecretDoc, encode,
};
use crate::domain::clock::unix_now;
use crate::domain::hex;
use crate::domain::ids::ClientId;
use crate::store::{RecordKind, Revoke};
use base64::Engine as _;
use serde_json::{Map, Value};
use std::time::Duration;

const KIND: RecordKind = RecordKind::Credential;

/// A credential just created: its version and document, and its secret (shown only now;
/// `None` for a public or certificate client, or one created with a hash).
pub struct Created {
    pub version: u64,
    pub doc: CredentialDoc,
    pub secret: Option<String>,
}

/// What a new credential comes from.
pub struct NewCredential {
    pub spec: Map<String, Value>,
    pub origin: Origin,
    pub by: String,
    pub registration: Option<RegistrationDoc>,
    pub subscription: Option<String>,
}

/// 256 random bits, base64url, with a prefix that says what it is.
pub fn random_token(prefix: &str) -> Result<String, ProvisionError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ProvisionError::NoRandomness)?;
    Ok(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A client id for a credential that names none: 128 random bits.
fn random_client_id() -> Result<String, ProvisionError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ProvisionError::NoRandomness)?;
    Ok(format!(
        "tgc_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A fresh secret and its argon2 hash (computed off the async threads).
async fn new_secret() -> Result<(String, String), ProvisionError> {
    let secret = random_token("tgs_")?;
    let s = crate::domain::secret::Secret::new(secret.clone());
    let hash = tokio::task::spawn_blocking(move || crate::domain::secret::hash_secret(s.expose()))
        .await
        .map_err(|e| ProvisionError::Hash(e.to_string()))?
        .map_err(|e| ProvisionError::Hash(e.to_string()))?;
    Ok((secret, hash))
}

impl Provisioner {
    /// The longest access-token lifetime a provisioned credential may set: what the
    /// files' clients already reach (signing keys stay published that long).
    fn lifetime_cap(&self) -> Duration {
        let catalog = self.live.load();
        catalog
            .registry
            .longest_token_lifetime()
            .unwrap_or(Duration::from_secs(365 * 86_400))
            .max(catalog.registry.default_lifetime())
    }

    /// Check a document as it would be served, with the rules only provisioned
    /// credentials have.
    pub(super) fn check(&self, id: &str, doc: &CredentialDoc) -> Result<(), ProvisionError> {
        let catalog = self.live.load();
        if catalog.registry.is_file_client(id) {
            return Err(ProvisionError::FileEntry(id.to_string()));
        }
        let cfg = doc.config(&catalog.provision, unix_now()).map_err(|errs| {
            ProvisionError::Invalid(
                errs.into_iter()
                    .map(|mut e| {
                        e.file = "request body".into();
                        e
                    })
                    .collect(),
            )
        })?;
        if cfg.client.token.immortal {
            return Err(ProvisionError::invalid(
                "token.immortal",
                "provisioned credentials get tokens that expire",
            ));
        }
        let cap = self.lifetime_cap();
        if cfg
            .client
            .token
            .access_token_lifetime
            .is_some_and(|l| l > cap)
        {
            return Err(ProvisionError::invalid(
                "token.access_token_lifetime",
                format!(
                    "at most {}s (the longest lifetime the upstreams file gives a client)",
                    cap.as_secs()
                ),
            ));
        }
        for (i, (name, d)) in cfg.client.api_keys.iter().enumerate() {
            if catalog
                .registry
                .api_key(d)
                .is_some_and(|k| k.client.id.as_str() != id)
            {
                return Err(ProvisionError::invalid(
                    &format!("api_keys[{i}]"),
                    format!("key `{name}` has the digest of another credential's key"),
                ));
            }
        }
        Ok(())
    }

    pub async fn create_credential(&self, new: NewCredential) -> Result<Created, ProvisionError> {
        let mut spec = new.spec;
        let id = match spec.get("client_id") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(ProvisionError::invalid("client_id", "must be a string")),
            None => {
                let id = random_client_id()?;
                spec.insert("client_id".into(), Value::String(id.clone()));
                id
            }
        };
        let now = unix_now();
        let given_hash = match spec.remove("client_secret_hash") {
            None => None,
            Some(Value::String(h)) => Some(h),
            Some(_) => {
                return Err(ProvisionError::invalid(
                    "client_secret_hash",
                    "must be an argon2 PHC string",
                ));
            }
        };
        let (secret, hash) = match given_hash {
            Some(h) => (None, Some(h)),
            None if CredentialDoc::wants_secret(&spec) => {
                // Checked before the hash is paid for.
                let probe = Some(crate::config::PLACEHOLDER_HASH);
                self.check(&id, &doc_with(&spec, &new.origin, &new.by, now, probe))?;
                let (s, h) = new_secret().await?;
                (Some(s), Some(h))
            }
            None => (None, None),
        };
        let doc = CredentialDoc {
            spec,
            secrets: hash
                .map(|hash| SecretDoc {
                    id: "s1".into(),
                    hash,
                    created_at: now,
                    expires_at: None,
                })
                .into_iter()
                .collect(),
            disabled: false,
            origin: new.origin,
            created_at: now,
            updated_at: now,
            changed_by: new.by,
            registration: new.registration,
            subscription: new.subscription,
        };
        self.check(&id, &doc)?;
        let version = match self.put(KIND, &id, None, encode(&doc)?).await {
            Err(ProvisionError::Conflict(..)) => {
                return Err(ProvisionError::Exists(KIND.label(), id));
            }
            other => other?,
        };
        Ok(Created {
            version,
            doc,
            secret,
        })
    }

    /// The stored credential (the store's, not the mirror's).
    pub async fn credential(&self, id: &str) -> Result<(u64, CredentialDoc), ProvisionError> {
        if self.live.load().registry.is_file_client(id) {
            return Err(ProvisionError::FileEntry(id.to_string()));
        }
        self.read(KIND, id).await
    }

    /// Read, change and write back under the version read (or `expected`, when the
    /// caller names one): two concurrent changes never both succeed.
    pub(super) async fn modify<T>(
        &self,
        id: &str,
        expected: Option<u64>,
        by: &str,
        change: impl FnOnce(&mut CredentialDoc) -> Result<T, ProvisionError>,
    ) -> Result<(u64, CredentialDoc, T), ProvisionError> {
        let (version, mut doc) = self.credential(id).await?;
        if let Some(e) = expected
            && e != version
        {
            return Err(ProvisionError::Conflict(KIND.label(), version.to_string()));
        }
        let out = change(&mut doc)?;
        doc.updated_at = unix_now();
        doc.changed_by = by.to_string();
        self.check(id, &doc)?;
        let version = self.put(KIND, id, Some(version), encode(&doc)?).await?;
        Ok((version, doc, out))
    }

    /// Replace the credential's settings (everything but its secrets and API keys, which
    /// have their own calls, unless the new settings list keys).
    pub async fn replace_credential(
        &self,
        id: &str,
        mut spec: Map<String, Value>,
        expected: Option<u64>,
        by: &str,
    ) -> Result<(u64, CredentialDoc), ProvisionError> {
        match spec.get("client_id") {
            None => {
                spec.insert("client_id".into(), Value::String(id.to_string()));
            }
            Some(Value::String(s)) if s == id => {}
            Some(_) => {
                return Err(ProvisionError::invalid(
                    "client_id",
                    "the client id of a credential cannot change",
                ));
            }
        }
        if spec.contains_key("client_secret_hash") {
            return Err(ProvisionError::invalid(
                "client_secret_hash",
                "secrets change through the rotation call",
            ));
        }
        let (v, doc, ()) = self
            .modify(id, expected, by, |doc| {
                if !spec.contains_key("api_keys")
                    && let Some(keys) = doc.spec.get("api_keys")
                {
                    spec.insert("api_keys".into(), keys.clone());
                }
                doc.spec = spec;
                Ok(())
            })
            .await?;
        Ok((v, doc))
    }

    pub async fn set_disabled(
        &self,
        id: &str,
        disabled: bool,
        expected: Option<u64>,
        by: &str,
    ) -> Result<(u64, CredentialDoc), ProvisionError> {
        let (v, doc, ()) = self
            .modify(id, expected, by, |doc| {
                doc.disabled = disabled;
                Ok(())
            })
            .await?;
        Ok((v, doc))
    }

    /// A new secret; the current ones keep working for `overlap` (zero: refused at once).
    pub async fn rotate_secret(
        &self,
        id: &str,
        overlap: Duration,
        expected: Option<u64>,
        by: &str,
    ) -> Result<(u64, CredentialDoc, String), ProvisionError> {
        let (_, current) = self.credential(id).await?;
        if !CredentialDoc::wants_secret(&current.spec) {
            return Err(ProvisionError::invalid(
                "client_secret",
                "this credential authenticates without a secret",
            ));
        }
        let (secret, hash) = new_secret().await?;
        let now = unix_now();
        let until = now.saturating_add(overlap.as_secs() as i64);
        self.modify(id, expected, by, move |doc| {
            let mut kept: Vec<SecretDoc> = doc
                .live_secrets(now)
                .cloned()
                .map(|mut s| {
                    s.expires_at = Some(s.expires_at.map_or(until, |t| t.min(until)));
                    s
                })
                .filter(|s| s.expires_at.is_some_and(|t| t > now))
                .collect();
            let n = doc
                .secrets
                .iter()
                .filter_map(|s| s.id.strip_prefix('s')?.parse::<u64>().ok())
                .max()
                .unwrap_or(0);
            kept.insert(
                0,
                SecretDoc {
                    id: format!("s{}", n + 1),
                    hash,
                    created_at: now,
                    expires_at: None,
                },
            );
            doc.secrets = kept;
            Ok(secret)
        })
        .await
    }

    /// A new API key named `name`: the key is returned (shown only now), its SHA-256 kept.
    pub async fn add_api_key(
        &self,
        id: &str,
        name: &str,
        expected: Option<u64>,
        by: &str,
    ) -> Result<(u64, CredentialDoc, String), ProvisionError> {
        if !crate::config::is_valid_name(name) {
            return Err(ProvisionError::invalid(
                "name",
                "a key name is 1-64 characters of A-Z a-z 0-9 - _ .",
            ));
        }
        let key = crate::opaque::generate_api_key().ok_or(ProvisionError::NoRandomness)?;
        let digest = hex(&crate::store::digest(&key));
        self.modify(id, expected, by, |doc| {
            let keys = doc
                .spec
                .entry("api_keys")
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(list) = keys else {
                return Err(ProvisionError::invalid("api_keys", "must be a list"));
            };
            if list
                .iter()
                .any(|k| k.get("name").and_then(Value::as_str) == Some(name))
            {
                return Err(ProvisionError::Exists("API key", name.to_string()));
            }
            list.push(serde_json::json!({ "name": name, "sha256": digest }));
            Ok(key)
        })
        .await
    }

    pub async fn delete_api_key(
        &self,
        id: &str,
        name: &str,
        expected: Option<u64>,
        by: &str,
    ) -> Result<(u64, CredentialDoc), ProvisionError> {
        let (v, doc, ()) = self
            .modify(id, expected, by, |doc| {
                let Some(Value::Array(list)) = doc.spec.get_mut("api_keys") else {
                    return Err(ProvisionError::NotFound("API key", name.to_string()));
                };
                let before = list.len();
                list.retain(|k| k.get("name").and_then(Value::as_str) != Some(name));
                if list.len() == before {
                    return Err(ProvisionError::NotFound("API key", name.to_string()));
                }
                Ok(())
            })
            .await?;
        Ok((v, doc))
    }

    /// Delete the credential and revoke every token it holds, on every node.
    pub async fn delete_credential(
        &self,
        id: &str,
        expected: Option<u64>,
    ) -> Result<CredentialDoc, ProvisionError> {
        let (version, doc) = self.credential(id).await?;
        if let Some(e) = expected
            && e != version
        {
            return Err(ProvisionError::Conflict(KIND.label(), version.to_string()));
        }
        let now = unix_now();
        // Remembered until its last token has expired: access tokens live at most the
        // cap, refresh tokens at most a month unless configured longer.
        let lifetime = self
            .lifetime_cap()
            .max(Duration::from_secs(30 * 86_400))
            .as_secs() as i64;
        self.store
            .revoke(Revoke::Client {
                client_id: ClientId::new(id),
                issued_before: now.saturating_add(1),
                until: Some(now.saturating_add(lifetime).saturating_add(self.leeway)),
            })
            .await?;
        self.delete(KIND, id, version).await?;
        Ok(doc)
    }
}

/// A document for the check made before a secret is hashed.
pub(super) fn doc_with(
    spec: &Map<String, Value>,
    origin: &Origin,
    by: &str,
    now: i64,
    hash: Option<&str>,
) -> CredentialDoc {
    CredentialDoc {
        spec: spec.clone(),
        secrets: hash
            .map(|h| SecretDoc {
                id: "s1".into(),
                hash: h.into(),
                created_at: now,
                expires_at: None,
            })
            .into_iter()
            .collect(),
        disabled: false,
        origin: *origin,
        created_at: now,
        updated_at: now,
        changed_by: by.into(),
        registration: None,
        subscription: None,
    }
}
