//! The RFC 8414 authorization-server metadata document.

use super::registry::Registry;
use crate::config::Config;
use bytes::Bytes;

/// Build the metadata once at startup. It advertises the endpoints of one family
/// (`discovery.family`), so a standard client needs nothing but the issuer URL.
pub fn discovery_document(config: &Config, registry: &Registry) -> Bytes {
    let issuer = &config.issuer;
    let family = config.discovery_family.prefix();
    let grants: Vec<&str> = registry.grant_types().iter().map(|g| g.as_str()).collect();
    let auth_methods = ["client_secret_basic", "client_secret_post"];
    let doc = serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}{family}/jwt"),
        "introspection_endpoint": format!("{issuer}{family}/introspect"),
        "revocation_endpoint": format!("{issuer}{family}/revoke"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": grants,
        "token_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "scopes_supported": registry.all_scopes(),
        // Required by RFC 8414 §2; empty until an authorization endpoint exists.
        "response_types_supported": [],
    });
    Bytes::from(doc.to_string())
}
