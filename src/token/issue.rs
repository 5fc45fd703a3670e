//! Issuance: the registered clients of both families, scope selection (RFC 6749 §3.3) and
//! signing JWT access tokens.

use super::error::{ErrorCode, OAuthError};
use crate::auth::scope::is_valid_scope_token;
use crate::config::{ClientConfig, Config, Family, GrantType};
use crate::jwt::{AudienceOut, IssuedClaims};
use crate::keys::KeySet;
use crate::redact::Secret;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A client of the token service: a policy's key (`/auth/*`) or a credential (`/credential/*`).
#[derive(Debug)]
pub struct Client {
    pub id: String,
    pub family: Family,
    pub secret_hash: Secret<String>,
    pub grant_types: Vec<GrantType>,
    /// Scopes the client may be granted.
    pub scopes: Vec<String>,
    /// Audiences of its tokens: the APIs the policy is attached to, or the credential's ACL.
    pub audiences: Vec<String>,
    pub lifetime: Duration,
}

/// Clients by family and id.
#[derive(Debug, Default)]
pub struct Registry {
    auth: HashMap<String, Arc<Client>>,
    credential: HashMap<String, Arc<Client>>,
}

impl Registry {
    pub fn from_config(config: &Config) -> Self {
        let audiences = |api_names: &[String]| -> Vec<String> {
            let mut out: Vec<String> = Vec::new();
            for name in api_names {
                if let Some(api) = config.apis.iter().find(|a| &a.name == name)
                    && !out.contains(&api.audience)
                {
                    out.push(api.audience.clone());
                }
            }
            out
        };
        let client = |c: &ClientConfig, family: Family, apis: &[String]| {
            Arc::new(Client {
                id: c.client_id.clone(),
                family,
                secret_hash: c.secret_hash.clone(),
                grant_types: c.grant_types.clone(),
                scopes: c.scopes.clone(),
                audiences: audiences(apis),
                lifetime: c
                    .access_token_lifetime
                    .unwrap_or(config.tokens.access_token_lifetime),
            })
        };
        Self {
            auth: config
                .policies
                .iter()
                .map(|p| {
                    (
                        p.client.client_id.clone(),
                        client(&p.client, Family::Auth, &p.apis),
                    )
                })
                .collect(),
            credential: config
                .credentials
                .iter()
                .map(|c| {
                    (
                        c.client.client_id.clone(),
                        client(&c.client, Family::Credential, &c.acl),
                    )
                })
                .collect(),
        }
    }

    pub fn get(&self, family: Family, id: &str) -> Option<&Arc<Client>> {
        match family {
            Family::Auth => self.auth.get(id),
            Family::Credential => self.credential.get(id),
        }
    }
}

/// The scopes to grant: all the client may have when the request names none, otherwise
/// the requested ones it may have. `invalid_scope` when a request names scopes and none
/// can be granted.
pub fn grant_scopes(
    requested: Option<&str>,
    allowed: &[String],
) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = requested else {
        return Ok(allowed.to_vec());
    };
    let mut out: Vec<String> = Vec::new();
    let mut named_any = false;
    for s in requested.split(' ').filter(|s| !s.is_empty()) {
        named_any = true;
        if !is_valid_scope_token(s) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "the scope parameter is malformed",
            ));
        }
        if allowed.iter().any(|a| a == s) && !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    if !named_any {
        return Ok(allowed.to_vec());
    }
    if out.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "none of the requested scopes can be granted to this client",
        ));
    }
    Ok(out)
}

/// A signed access token and what the token response says about it.
pub struct Issued {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
}

/// Signs access tokens for one issuer.
pub struct Signer {
    keys: Arc<KeySet>,
    issuer: Arc<str>,
}

impl Signer {
    pub fn new(keys: Arc<KeySet>, issuer: Arc<str>) -> Self {
        Self { keys, issuer }
    }

    /// A JWT for `client` carrying `scopes`, valid from `now` for the client's lifetime.
    pub fn jwt(&self, client: &Client, scopes: &[String], now: i64) -> Result<Issued, OAuthError> {
        let lifetime = client.lifetime.as_secs();
        let jti = random_id()
            .ok_or_else(|| OAuthError::new(ErrorCode::ServerError, "no randomness available"))?;
        let scope = scopes.join(" ");
        let claims = IssuedClaims {
            iss: &self.issuer,
            sub: &client.id,
            aud: AudienceOut::from_list(&client.audiences),
            exp: now.saturating_add(lifetime as i64),
            iat: now,
            nbf: now,
            jti: &jti,
            client_id: &client.id,
            scope: &scope,
        };
        let json = serde_json::to_vec(&claims)
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "cannot encode the token"))?;
        let access_token = self
            .keys
            .signing()
            .sign_compact(&json)
            .map_err(|_| OAuthError::new(ErrorCode::ServerError, "cannot sign the token"))?;
        Ok(Issued {
            access_token,
            expires_in: lifetime,
            scope,
        })
    }
}

/// 128 random bits, base64url: token ids.
pub fn random_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(B64.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_request_grants_everything_allowed() {
        assert_eq!(grant_scopes(None, &v(&["a", "b"])).unwrap(), v(&["a", "b"]));
        assert_eq!(grant_scopes(None, &[]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn request_is_intersected() {
        assert_eq!(
            grant_scopes(Some("b c b"), &v(&["a", "b"])).unwrap(),
            v(&["b"])
        );
        assert_eq!(grant_scopes(Some("  "), &v(&["a"])).unwrap(), v(&["a"]));
    }

    #[test]
    fn nothing_grantable_is_invalid_scope() {
        let e = grant_scopes(Some("x y"), &v(&["a"])).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        let e = grant_scopes(Some("a\"b"), &v(&["a"])).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
    }

    #[test]
    fn ids_are_unique_and_url_safe() {
        let a = random_id().unwrap();
        let b = random_id().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
