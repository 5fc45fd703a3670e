//! The RFC 8414 authorization-server metadata document.

use crate::config::Config;
use bytes::Bytes;

/// Build the metadata once at startup. It advertises the endpoints of one family
/// (`discovery.family`), so a standard client needs nothing but the issuer URL.
pub fn discovery_document(config: &Config) -> Bytes {
    let issuer = &config.issuer;
    let family = config.discovery_family.prefix();
    let mut scopes: Vec<&str> = config
        .policies
        .iter()
        .map(|p| &p.client)
        .chain(config.credentials.iter().map(|c| &c.client))
        .flat_map(|c| c.scopes.iter().map(String::as_str))
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    let doc = serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}{family}/jwt"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": scopes,
        // Required by RFC 8414 §2; empty until an authorization endpoint exists.
        "response_types_supported": [],
    });
    Bytes::from(doc.to_string())
}
