//! The metadata documents: RFC 8414 authorization-server metadata and OpenID Connect
//! Discovery 1.0 (`/.well-known/openid-configuration`), built with each catalog.

use crate::catalog::registry::Registry;
use crate::config::{ClientCertSupport, Config, SigningKeySource};
use crate::domain::endpoint::{LOGOUT_PATH, USERINFO_PATH, authorize_path};
use crate::domain::oauth::OIDC_SCOPES;
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// The members both documents share. They advertise the endpoints of one family
/// (`discovery.family`), so a standard client needs nothing but the issuer URL.
fn common(config: &Config, registry: &Registry) -> Map<String, Value> {
    let issuer = &config.issuer;
    let family = config.discovery_family;
    let prefix = family.prefix();
    let mut grants: Vec<&str> = registry.grant_types().iter().map(|g| g.as_str()).collect();
    let registration = config.registration.enabled;
    if registration {
        // What registered clients may use (the code flow where a pool signs users in).
        let mut offered = vec!["client_credentials", "refresh_token"];
        if !config.user_pools.is_empty() {
            offered.push("authorization_code");
        }
        for g in offered {
            if !grants.contains(&g) {
                grants.push(g);
            }
        }
    }
    let mut auth_methods = vec!["client_secret_basic", "client_secret_post"];
    if registry.has_public_clients() || registration {
        // RFC 8414 §2: "none" where some client authenticates with no secret.
        auth_methods.push("none");
    }
    // RFC 8705 §2: the certificate methods where a listener asks for certificates
    // (`tls_client_auth` needs one that verifies chains against a `client_ca`).
    let certs = ClientCertSupport::of(&config.listeners);
    let mut confidential = vec!["client_secret_basic", "client_secret_post"];
    if certs.with_ca {
        confidential.push("tls_client_auth");
    }
    if certs.any {
        confidential.push("self_signed_tls_client_auth");
    }
    auth_methods.extend(confidential.iter().skip(2));
    let mut scopes = registry.all_scopes();
    for s in OIDC_SCOPES {
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_string());
        }
    }
    let doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}{}", authorize_path(family)),
        "token_endpoint": format!("{issuer}{prefix}/jwt"),
        "introspection_endpoint": format!("{issuer}{prefix}/introspect"),
        "revocation_endpoint": format!("{issuer}{prefix}/revoke"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": grants,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "token_endpoint_auth_methods_supported": auth_methods,
        // Introspection and revocation need a confidential client (RFC 7662 §2.1); a
        // public client revokes its own tokens by client_id alone (RFC 7009 §2.1).
        "introspection_endpoint_auth_methods_supported": confidential,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "scopes_supported": scopes,
        "userinfo_endpoint": format!("{issuer}{USERINFO_PATH}"),
        "end_session_endpoint": format!("{issuer}{LOGOUT_PATH}"),
        // RFC 9449 §5.1: the algorithms DPoP proofs may be signed with.
        "dpop_signing_alg_values_supported": config
            .dpop
            .algorithms
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
    });
    let Value::Object(mut m) = doc else {
        return Map::new();
    };
    if registration {
        // RFC 8414 §2 / RFC 7591 §3.
        m.insert(
            "registration_endpoint".into(),
            Value::from(format!(
                "{issuer}{}",
                crate::domain::endpoint::REGISTER_PATH
            )),
        );
    }
    if certs.any {
        // RFC 8705 §3.3: tokens may be bound to the client certificate.
        m.insert(
            "tls_client_certificate_bound_access_tokens".into(),
            true.into(),
        );
    }
    if let Some(base) = &config.mtls_endpoint_base {
        // RFC 8705 §5: where the endpoints that take certificates are reached.
        let alias = |key: &str| {
            m.get(key)
                .and_then(Value::as_str)
                .and_then(|url| url.strip_prefix(issuer.as_str()))
                .map(|path| (key.to_string(), Value::from(format!("{base}{path}"))))
        };
        let aliases: Map<String, Value> = [
            "token_endpoint",
            "introspection_endpoint",
            "revocation_endpoint",
            "userinfo_endpoint",
        ]
        .into_iter()
        .filter_map(alias)
        .collect();
        m.insert("mtls_endpoint_aliases".into(), Value::Object(aliases));
    }
    m
}

/// RFC 8414 metadata.
pub fn discovery_document(config: &Config, registry: &Registry) -> Bytes {
    Bytes::from(Value::Object(common(config, registry)).to_string())
}

/// OpenID Connect Discovery 1.0 §3: RFC 8414's members plus the provider's own.
pub fn oidc_document(config: &Config, registry: &Registry) -> Bytes {
    let mut doc = common(config, registry);
    let alg = match &config.tokens.signing_key {
        SigningKeySource::Generated { algorithm, .. } => *algorithm,
        SigningKeySource::File(f) => f.algorithm,
    };
    let extra = json!({
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [alg.as_str()],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash",
            "name", "preferred_username", "email", "email_verified"
        ],
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
        "prompt_values_supported": ["none", "login", "consent"],
    });
    if let Value::Object(m) = extra {
        doc.extend(m);
    }
    Bytes::from(Value::Object(doc).to_string())
}
