//! Minting tokens: scope selection (RFC 6749 §3.3), JWT and opaque access tokens, refresh
//! tokens, and the records the store keeps for the ones that need it.

use super::error::{ErrorCode, OAuthError};
use crate::catalog::registry::Client;
use crate::domain::cnf::Confirmation;
use crate::domain::ids::{GrantId, Jti};
use crate::domain::oauth::Format;
use crate::domain::oauth::TokenKind;
use crate::domain::scope::is_valid_scope_token;
use crate::jwt::{AudienceOut, CnfOut, IssuedClaims, TenantClaims};
use crate::keys::KeyRing;
use crate::opaque;
use crate::store::{Digest, TokenRecord, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::sync::Arc;

/// The scopes to grant: everything `allowed` when the request names none, otherwise the
/// requested ones that are allowed. `invalid_scope` when a request names scopes and none
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
            "none of the requested scopes can be granted",
        ));
    }
    Ok(out)
}

/// 128 random bits, base64url: token ids.
pub fn random_id() -> Option<String> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(B64.encode(bytes))
}

/// A grant id: the issuing millisecond in 11 hex digits, then 72 random bits in base64url
/// (23 characters). Ids of one moment share a prefix, so the store's grant index grows at
/// its end instead of at a random page per grant, which halves the pages each stored token
/// writes. The time is no secret: `iat` carries it too.
pub fn grant_id(now_ms: u64) -> Option<String> {
    let mut bytes = [0u8; 9];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(format!(
        "{:011x}{}",
        now_ms & 0xfff_ffff_ffff,
        B64.encode(bytes)
    ))
}

fn no_randomness() -> OAuthError {
    OAuthError::new(ErrorCode::ServerError, "no randomness available")
}

/// What to mint.
pub struct Issue<'a> {
    pub client: &'a Client,
    pub username: Option<&'a str>,
    pub scopes: &'a [String],
    pub audiences: &'a [String],
    pub format: Format,
    pub grant_id: &'a str,
    pub with_refresh: bool,
    pub now: i64,
    /// `sub` when it is neither the user nor the client (an exchanged external subject).
    pub subject: Option<&'a str>,
    /// Tenant tokens: their directory claims.
    pub tenant: Option<&'a TenantClaims>,
    /// What the access token is bound to (DPoP key, client certificate). A public
    /// client's refresh token is bound to the same DPoP key (RFC 9449 §5).
    pub cnf: Option<Confirmation>,
}

/// Minted tokens, and the records to store before the client may have them.
pub struct Minted {
    /// RFC 8693 `issued_token_type`, for exchanged tokens.
    pub issued_token_type: Option<&'static str>,
    /// The OpenID Connect ID token of an authorization code with `openid`.
    pub id_token: Option<String>,
    pub access_token: String,
    pub expires_in: Option<u64>,
    pub scope: String,
    pub refresh_token: Option<String>,
    pub records: Vec<(Digest, TokenRecord)>,
    /// `DPoP` for a DPoP-bound access token (RFC 9449 §5), else `Bearer`.
    pub token_type: &'static str,
}

impl Minted {
    /// The RFC 6749 §5.1 response body.
    pub fn body(&self) -> String {
        let mut body = serde_json::json!({
            "access_token": self.access_token,
            "token_type": self.token_type,
        });
        if let Some(e) = self.expires_in {
            body["expires_in"] = e.into();
        }
        if !self.scope.is_empty() {
            body["scope"] = self.scope.clone().into();
        }
        if let Some(r) = &self.refresh_token {
            body["refresh_token"] = r.clone().into();
        }
        if let Some(t) = self.issued_token_type {
            body["issued_token_type"] = t.into();
        }
        if let Some(t) = &self.id_token {
            body["id_token"] = t.clone().into();
        }
        body.to_string()
    }
}

/// Signs and mints tokens for one issuer.
pub struct Signer {
    keys: Arc<KeyRing>,
    issuer: Arc<str>,
}

impl Signer {
    pub fn new(keys: Arc<KeyRing>, issuer: Arc<str>) -> Self {
        Self { keys, issuer }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn mint(&self, i: Issue<'_>) -> Result<Minted, OAuthError> {
        let lifetime = i.client.access_lifetime().map(|d| d.as_secs());
        let exp = lifetime.map(|l| i.now.saturating_add(l as i64));
        let scope = i.scopes.join(" ");
        let jti = random_id().ok_or_else(no_randomness)?;
        let mut records = Vec::new();
        let record = |kind, jti: String, format, expires_at, cnf| TokenRecord {
            kind,
            jti: Jti::new(jti),
            grant_id: GrantId::new(i.grant_id),
            client_id: i.client.id.clone(),
            family: i.client.family,
            username: i.username.map(str::to_string),
            scope: scope.clone(),
            audiences: i.audiences.to_vec(),
            format,
            issued_at: i.now,
            expires_at,
            used_at: None,
            revoked: false,
            cnf,
        };
        let access_token =
            match i.format {
                Format::Jwt => {
                    let claims = IssuedClaims {
                        iss: &self.issuer,
                        sub: i.subject.or(i.username).unwrap_or(&i.client.id),
                        aud: AudienceOut::from_list(i.audiences),
                        exp,
                        iat: i.now,
                        nbf: i.now,
                        jti: &jti,
                        client_id: &i.client.id,
                        scope: &scope,
                        username: i.username,
                        gid: i.grant_id,
                        tenant: i.tenant,
                        cnf: i.cnf.map(CnfOut),
                    };
                    let json = serde_json::to_vec(&claims).map_err(|_| {
                        OAuthError::new(ErrorCode::ServerError, "cannot encode the token")
                    })?;
                    self.keys.get().signing().sign_compact(&json).map_err(|_| {
                        OAuthError::new(ErrorCode::ServerError, "cannot sign the token")
                    })?
                }
                Format::Opaque => {
                    let token = opaque::generate(opaque::Kind::Access).ok_or_else(no_randomness)?;
                    records.push((
                        digest(&token),
                        record(TokenKind::Access, jti, Format::Opaque, exp, i.cnf),
                    ));
                    token
                }
            };
        let refresh_token = match (i.with_refresh, i.client.token.refresh) {
            (true, Some(refresh_lifetime)) => {
                let token = opaque::generate(opaque::Kind::Refresh).ok_or_else(no_randomness)?;
                let rjti = random_id().ok_or_else(no_randomness)?;
                let expires = i.now.saturating_add(refresh_lifetime.as_secs() as i64);
                // A confidential client proves itself at every refresh; a public one
                // proves the key its refresh token is bound to (RFC 9449 §5).
                let public = i.client.public || i.client.browser.public;
                let bound = i
                    .cnf
                    .filter(|c| public && matches!(c, Confirmation::Jkt(_)));
                records.push((
                    digest(&token),
                    record(TokenKind::Refresh, rjti, i.format, Some(expires), bound),
                ));
                Some(token)
            }
            _ => None,
        };
        Ok(Minted {
            issued_token_type: None,
            id_token: None,
            access_token,
            expires_in: lifetime,
            scope,
            refresh_token,
            records,
            token_type: match i.cnf {
                Some(Confirmation::Jkt(_)) => "DPoP",
                _ => "Bearer",
            },
        })
    }
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
        assert_eq!(grant_scopes(Some("  "), &v(&["a"])).unwrap(), v(&["a"]));
        assert_eq!(grant_scopes(None, &[]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn request_is_intersected() {
        assert_eq!(
            grant_scopes(Some("b c b"), &v(&["a", "b"])).unwrap(),
            v(&["b"])
        );
    }

    #[test]
    fn nothing_grantable_is_invalid_scope() {
        let e = grant_scopes(Some("x y"), &v(&["a"])).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        let e = grant_scopes(Some("a\"b"), &v(&["a"])).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
    }

    #[test]
    fn grant_ids_sort_by_time_and_are_unique() {
        let a = grant_id(1_700_000_000_000).unwrap();
        let b = grant_id(1_700_000_000_001).unwrap();
        assert!(a < b, "{a} {b}");
        assert_ne!(a, grant_id(1_700_000_000_000).unwrap());
        assert_eq!(a.len(), 23);
        assert!(a.starts_with("18bcfe56800"), "{a}");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn ids_are_unique_and_url_safe() {
        let a = random_id().unwrap();
        assert_ne!(a, random_id().unwrap());
        assert_eq!(a.len(), 22);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
