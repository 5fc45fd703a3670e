//! The documents the store keeps for provisioned credentials and subscriptions (JSON), and
//! how a credential's document becomes the configuration the registry serves.

use crate::config::{ConfigError, CredentialConfig, ProvisionRefs};
use crate::domain::secret::Secret;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Who made a provisioned credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// An admin key, through the admin API.
    Admin,
    /// A subscription (its credential).
    Subscription,
    /// Dynamic client registration (RFC 7591).
    Registration,
}

/// One client secret: only its argon2 hash is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretDoc {
    pub id: String,
    pub hash: String,
    pub created_at: i64,
    /// The end of a rotation's overlap: refused from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// What RFC 7591 registration recorded: the metadata as registered and the digest of
/// the registration access token (RFC 7592).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationDoc {
    pub access_token_sha256: String,
    pub metadata: Map<String, Value>,
    /// What the initial access token (or open registration) granted.
    pub grant: crate::config::GrantFile,
    pub issued_at: i64,
}

/// A provisioned credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredentialDoc {
    /// The credential as an upstreams-file entry writes it, without its secret.
    pub spec: Map<String, Value>,
    /// Newest first.
    #[serde(default)]
    pub secrets: Vec<SecretDoc>,
    #[serde(default)]
    pub disabled: bool,
    pub origin: Origin,
    pub created_at: i64,
    pub updated_at: i64,
    /// The admin key (or `registration`) that made the last change.
    pub changed_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<RegistrationDoc>,
    /// The subscription it was made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
}

impl CredentialDoc {
    /// The secrets usable at `now`, newest first.
    pub fn live_secrets(&self, now: i64) -> impl Iterator<Item = &SecretDoc> {
        self.secrets
            .iter()
            .filter(move |s| s.expires_at.is_none_or(|t| now < t))
    }

    /// When the next live secret stops working.
    pub fn next_expiry(&self, now: i64) -> Option<i64> {
        self.live_secrets(now).filter_map(|s| s.expires_at).min()
    }

    /// The configuration this document stands for at `now`, checked as a file entry.
    pub fn config(
        &self,
        refs: &ProvisionRefs,
        now: i64,
    ) -> Result<CredentialConfig, Vec<ConfigError>> {
        let live: Vec<&SecretDoc> = self.live_secrets(now).collect();
        let mut spec = self.spec.clone();
        if let Some(newest) = live.first() {
            spec.insert(
                "client_secret_hash".into(),
                Value::String(newest.hash.clone()),
            );
        }
        let mut cfg = refs.check_credential(&Value::Object(spec), "stored credential", "")?;
        if live.len() > 1 {
            cfg.client.secrets = live
                .iter()
                .map(|s| (s.id.clone(), Secret::new(s.hash.clone())))
                .collect();
        }
        Ok(cfg)
    }

    /// Whether the credential authenticates with a secret (not a public client, not a
    /// certificate).
    pub fn wants_secret(spec: &Map<String, Value>) -> bool {
        let method = spec
            .get("token_endpoint_auth_method")
            .and_then(Value::as_str)
            .unwrap_or("client_secret_basic");
        let certificate = spec.keys().any(|k| k.starts_with("tls_client_"));
        matches!(method, "client_secret_basic" | "client_secret_post") && !certificate
    }
}

/// A subscription (seed 002): a consumer subscribed to an API or a product, and the
/// credential provisioned for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionDoc {
    pub id: String,
    pub consumer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The client id of its credential.
    pub credential: String,
    pub created_at: i64,
    pub changed_by: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(secrets: Vec<(&str, Option<i64>)>) -> CredentialDoc {
        CredentialDoc {
            spec: Map::new(),
            secrets: secrets
                .into_iter()
                .map(|(id, expires_at)| SecretDoc {
                    id: id.into(),
                    hash: format!("hash-{id}"),
                    created_at: 0,
                    expires_at,
                })
                .collect(),
            disabled: false,
            origin: Origin::Admin,
            created_at: 0,
            updated_at: 0,
            changed_by: "t".into(),
            registration: None,
            subscription: None,
        }
    }

    #[test]
    fn an_overlapping_secret_works_until_its_end() {
        let d = doc(vec![("s2", None), ("s1", Some(100))]);
        let ids = |now| {
            d.live_secrets(now)
                .map(|s| s.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(99), ["s2", "s1"]);
        assert_eq!(ids(100), ["s2"], "refused from its end on");
        assert_eq!(d.next_expiry(99), Some(100));
        assert_eq!(d.next_expiry(100), None);
    }

    #[test]
    fn only_secret_methods_get_a_secret() {
        let spec = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        assert!(CredentialDoc::wants_secret(&spec(json!({}))));
        assert!(CredentialDoc::wants_secret(&spec(
            json!({ "token_endpoint_auth_method": "client_secret_post" })
        )));
        assert!(!CredentialDoc::wants_secret(&spec(
            json!({ "token_endpoint_auth_method": "none" })
        )));
        assert!(!CredentialDoc::wants_secret(&spec(
            json!({ "tls_client_auth_san_dns": "a.example" })
        )));
    }
}
