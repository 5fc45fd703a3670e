//! What the admin API shows of stored documents and of the running catalog: never a
//! secret's hash, never an API key's digest; every item says where it came from.

use crate::domain::clock::rfc3339;
use crate::provision::{CredentialDoc, Provisioner, SubscriptionDoc};
use crate::store::RecordKind;
use serde_json::{Map, Value, json};

/// A stored credential as the API shows it.
pub fn credential_view(
    id: &str,
    version: u64,
    doc: &[u8],
    unserved: Option<&str>,
) -> Option<Value> {
    let doc: CredentialDoc = serde_json::from_slice(doc).ok()?;
    let now = crate::domain::clock::unix_now();
    let mut settings: Map<String, Value> = doc.spec.clone();
    settings.remove("client_id");
    let keys: Vec<Value> = settings
        .remove("api_keys")
        .and_then(|k| k.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|k| k.get("name").cloned())
        .map(|n| json!({ "name": n }))
        .collect();
    let secrets: Vec<Value> = doc
        .live_secrets(now)
        .map(|s| {
            json!({
                "id": s.id,
                "created_at": rfc3339(s.created_at),
                "expires_at": s.expires_at.map(rfc3339),
            })
        })
        .collect();
    let mut v = json!({
        "client_id": id,
        "source": "store",
        "version": version,
        "origin": doc.origin,
        "disabled": doc.disabled,
        "served": unserved.is_none(),
        "settings": settings,
        "secrets": secrets,
        "api_keys": keys,
        "created_at": rfc3339(doc.created_at),
        "updated_at": rfc3339(doc.updated_at),
        "changed_by": doc.changed_by,
    });
    if let Value::Object(m) = &mut v {
        if let Some(why) = unserved {
            m.insert("unserved".into(), Value::String(why.to_string()));
        }
        if let Some(s) = &doc.subscription {
            m.insert("subscription".into(), Value::String(s.clone()));
        }
        if let Some(r) = &doc.registration {
            m.insert("registration".into(), Value::Object(r.metadata.clone()));
        }
    }
    Some(v)
}

/// A credential of the upstreams file, read-only.
pub fn file_credential(p: &Provisioner, id: &str) -> Option<Value> {
    let catalog = p.live().load();
    if !catalog.registry.is_file_client(id) {
        return None;
    }
    let c = catalog.registry.any_client(id)?;
    let mut apis: Vec<&String> = c.apis.iter().collect();
    apis.sort();
    Some(json!({
        "client_id": id,
        "source": "file",
        "read_only": true,
        "family": match c.family {
            crate::domain::oauth::Family::Auth => "policy",
            crate::domain::oauth::Family::Credential => "credential",
        },
        "apis": apis,
        "roles": c.scopes,
        "grant_types": c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
    }))
}

pub fn subscription_view(d: &SubscriptionDoc) -> Value {
    json!({
        "id": d.id,
        "consumer": d.consumer,
        "api": d.api,
        "product": d.product,
        "credential": d.credential,
        "created_at": rfc3339(d.created_at),
        "changed_by": d.changed_by,
    })
}

/// The effective catalog: what the files define and what the store adds.
pub fn catalog(p: &Provisioner) -> Value {
    let catalog = p.live().load();
    let apis: Vec<Value> = catalog
        .apis
        .iter()
        .map(|a| {
            json!({
                "name": &*a.name,
                "prefix": &*a.prefix,
                "audience": &*a.audience,
                "auth": { "jwt": a.auth.jwt, "api_key": a.auth.api_key },
                "issuers": a.issuers.iter().map(|i| &**i).collect::<Vec<_>>(),
                "rules": a.rules.len(),
                "scopes": catalog.registry.api(&a.name).map(|i| i.scopes.clone()).unwrap_or_default(),
                "dpop_required": a.dpop_required,
                "source": "file",
            })
        })
        .collect();
    let issuers: Vec<Value> = catalog
        .issuers
        .iter()
        .map(|i| json!({ "name": i.name(), "source": "file" }))
        .collect();
    let (policies, credentials) = catalog.registry.file_clients();
    json!({
        "apis": apis,
        "issuers": issuers,
        "products": catalog.provision.products().iter().map(|(name, apis)| json!({
            "name": name, "apis": apis, "source": "file",
        })).collect::<Vec<_>>(),
        "policies": policies.iter().map(|id| json!({ "client_id": id, "source": "file" })).collect::<Vec<_>>(),
        "credentials": {
            "file": credentials,
            "store": p.count(RecordKind::Credential),
            "served_from_store": catalog.registry.overlay().len(),
        },
        "subscriptions": { "store": p.count(RecordKind::Subscription) },
        "registration": {
            "enabled": catalog.registration.enabled,
            "open": catalog.registration.open.is_some(),
        },
    })
}
