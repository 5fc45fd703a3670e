//! Client metadata (RFC 7591 §2) as a credential: what the server offers, the defaults it
//! fills in, and what it keeps only to echo back.

use super::RegistrationError;
use crate::config::GrantFile;
use serde_json::{Map, Value, json};

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
pub(super) struct Asked {
    pub spec: Map<String, Value>,
    pub registered: Map<String, Value>,
}

/// The credential settings that client `metadata` asks for under `grant`.
pub(super) fn spec(
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
        Some(s) => {
            let asked: Vec<&str> = s.split(' ').filter(|r| !r.is_empty()).collect();
            let kept: Vec<String> = asked
                .iter()
                .filter(|r| grant.roles.iter().any(|g| g == *r))
                .map(|r| r.to_string())
                .collect();
            if kept.is_empty() && !asked.is_empty() {
                return Err(RegistrationError::InvalidMetadata(
                    "scope: none of these scopes is granted to clients registered with this token"
                        .into(),
                ));
            }
            kept
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(pool: Option<&str>) -> GrantFile {
        GrantFile {
            acl: vec!["orders".into()],
            products: Vec::new(),
            roles: vec!["orders:read".into(), "orders:write".into()],
            user_pool: pool.map(str::to_string),
        }
    }

    fn meta(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn metadata_becomes_a_credential_within_the_grant() {
        let asked = spec(
            "c1",
            &meta(json!({
                "grant_types": ["client_credentials", "refresh_token"],
                "scope": "orders:read admin:all",
                "client_name": "Reports",
                "logo_uri": "https://x.example/logo.png",
                "unknown_field": 1,
            })),
            &grant(None),
        )
        .unwrap();
        assert_eq!(
            asked.spec["roles"],
            json!(["orders:read"]),
            "narrowed to the grant"
        );
        assert_eq!(asked.spec["acl"], json!(["orders"]));
        assert_eq!(asked.spec["grant_types"], json!(["client_credentials"]));
        assert_eq!(asked.spec["token"], json!({ "refresh": true }));
        assert_eq!(asked.registered["scope"], "orders:read");
        assert_eq!(asked.registered["response_types"], json!([]));
        assert_eq!(asked.registered["logo_uri"], "https://x.example/logo.png");
        assert!(!asked.registered.contains_key("unknown_field"));
    }

    #[test]
    fn what_the_server_does_not_offer_is_refused() {
        let refused = |m: Value, g: GrantFile| spec("c1", &meta(m), &g).err();
        // RFC 7591 §2: no grant_types means authorization_code, which needs a pool.
        assert!(matches!(
            refused(
                json!({ "redirect_uris": ["https://a.example/cb"] }),
                grant(None)
            ),
            Some(RegistrationError::InvalidMetadata(_))
        ));
        assert!(matches!(
            refused(json!({}), grant(Some("staff"))),
            Some(RegistrationError::InvalidRedirectUri(_))
        ));
        assert!(matches!(
            refused(
                json!({ "token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"] }),
                grant(None)
            ),
            Some(RegistrationError::InvalidMetadata(_))
        ));
        assert!(matches!(
            refused(
                json!({ "grant_types": ["client_credentials"], "response_types": ["token"] }),
                grant(None)
            ),
            Some(RegistrationError::InvalidMetadata(_))
        ));
        assert!(matches!(
            refused(
                json!({ "redirect_uris": "https://a.example/cb" }),
                grant(Some("staff"))
            ),
            Some(RegistrationError::InvalidMetadata(_))
        ));
        let code = spec(
            "c1",
            &meta(json!({ "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "none" })),
            &grant(Some("staff")),
        )
        .unwrap();
        assert_eq!(code.spec["user_pool"], "staff");
        assert_eq!(code.registered["response_types"], json!(["code"]));
    }
}
