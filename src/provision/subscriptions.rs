//! Subscriptions (seed 002): a consumer subscribed to an API or a product gets one
//! credential, provisioned with the subscription; deleting the subscription deletes it.

use super::credentials::{Created, NewCredential, random_token};
use super::{Origin, ProvisionError, Provisioner, SubscriptionDoc, encode};
use crate::domain::clock::unix_now;
use crate::store::RecordKind;
use serde_json::{Map, Value, json};

const KIND: RecordKind = RecordKind::Subscription;

/// What a subscription is asked for.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// Default: generated.
    pub id: Option<String>,
    pub consumer: String,
    pub api: Option<String>,
    pub product: Option<String>,
    /// The credential's roles; default: every scope the subscribed APIs declare.
    pub roles: Option<Vec<String>>,
    /// The credential's token settings (as a credential's `token:`).
    pub token: Option<Map<String, Value>>,
}

impl Provisioner {
    pub async fn create_subscription(
        &self,
        new: NewSubscription,
        by: &str,
    ) -> Result<(u64, SubscriptionDoc, Created), ProvisionError> {
        let id = match new.id {
            Some(id) if crate::config::is_valid_name(&id) => id,
            Some(_) => {
                return Err(ProvisionError::invalid(
                    "id",
                    "1-64 characters of A-Z a-z 0-9 - _ .",
                ));
            }
            None => random_token("sub_")?.chars().take(26).collect(),
        };
        if new.consumer.trim().is_empty() || new.consumer.len() > 256 {
            return Err(ProvisionError::invalid("consumer", "1-256 characters"));
        }
        if self.mirrored(KIND, &id).is_some() {
            return Err(ProvisionError::Exists(KIND.label(), id));
        }
        let catalog = self.live.load();
        let apis: Vec<String> = match (&new.api, &new.product) {
            (Some(a), None) => vec![a.clone()],
            (None, Some(p)) => match catalog.provision.product(p) {
                Some(apis) => apis.to_vec(),
                None => {
                    return Err(ProvisionError::invalid(
                        "product",
                        format!("no product is named `{p}`"),
                    ));
                }
            },
            _ => {
                return Err(ProvisionError::invalid(
                    "api",
                    "name exactly one of `api` and `product`",
                ));
            }
        };
        let roles = new.roles.unwrap_or_else(|| {
            let mut all: Vec<String> = apis
                .iter()
                .filter_map(|a| catalog.registry.api(a))
                .flat_map(|a| a.scopes.iter().cloned())
                .collect();
            all.sort_unstable();
            all.dedup();
            all
        });
        drop(catalog);
        let mut spec = Map::new();
        spec.insert("client_id".into(), Value::String(format!("{id}-client")));
        match (&new.api, &new.product) {
            (Some(a), _) => spec.insert("acl".into(), json!([a])),
            (_, Some(p)) => spec.insert("products".into(), json!([p])),
            _ => None,
        };
        spec.insert("roles".into(), json!(roles));
        if let Some(t) = new.token {
            spec.insert("token".into(), Value::Object(t));
        }
        let created = self
            .create_credential(NewCredential {
                spec,
                origin: Origin::Subscription,
                by: by.to_string(),
                registration: None,
                subscription: Some(id.clone()),
            })
            .await?;
        let doc = SubscriptionDoc {
            id: id.clone(),
            consumer: new.consumer,
            api: new.api,
            product: new.product,
            credential: format!("{id}-client"),
            created_at: unix_now(),
            changed_by: by.to_string(),
        };
        match self.put(KIND, &id, None, encode(&doc)?).await {
            Ok(version) => Ok((version, doc, created)),
            Err(e) => {
                // Not subscribed after all: its credential goes too.
                if let Err(undo) = self.delete_credential(&doc.credential, None).await {
                    log::error!(
                        "subscription `{id}` was not stored and its credential `{}` could not be removed: {undo}",
                        doc.credential
                    );
                }
                Err(match e {
                    ProvisionError::Conflict(..) => ProvisionError::Exists(KIND.label(), id),
                    other => other,
                })
            }
        }
    }

    pub async fn subscription(&self, id: &str) -> Result<(u64, SubscriptionDoc), ProvisionError> {
        self.read(KIND, id).await
    }

    /// Delete the subscription and its credential (its tokens revoked everywhere).
    pub async fn delete_subscription(
        &self,
        id: &str,
        expected: Option<u64>,
    ) -> Result<SubscriptionDoc, ProvisionError> {
        let (version, doc) = self.subscription(id).await?;
        if let Some(e) = expected
            && e != version
        {
            return Err(ProvisionError::Conflict(KIND.label(), version.to_string()));
        }
        match self.delete_credential(&doc.credential, None).await {
            Ok(_) | Err(ProvisionError::NotFound(..)) => {}
            Err(e) => return Err(e),
        }
        self.delete(KIND, id, version).await?;
        Ok(doc)
    }
}
