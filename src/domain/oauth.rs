//! The OAuth words both sides of the gateway use: the two management families, grant
//! types, what a policy issues, token formats and kinds, and the scopes of OpenID Connect
//! itself.

use serde::Deserialize;

/// Which management family a token endpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// `/auth/*`: "manage from this policy".
    Auth,
    /// `/credential/*`: "manage from ACL".
    Credential,
}

impl Family {
    pub fn prefix(self) -> &'static str {
        match self {
            Family::Auth => "/auth",
            Family::Credential => "/credential",
        }
    }
}

/// OAuth2 grant types (RFC 6749 §4, §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    ClientCredentials,
    Password,
    RefreshToken,
    /// RFC 8693, `urn:ietf:params:oauth:grant-type:token-exchange` on the wire.
    TokenExchange,
    /// RFC 6749 §4.1 with PKCE (RFC 7636).
    AuthorizationCode,
}

impl GrantType {
    pub const ALL: [GrantType; 5] = [
        GrantType::AuthorizationCode,
        GrantType::ClientCredentials,
        GrantType::Password,
        GrantType::RefreshToken,
        GrantType::TokenExchange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::Password => "password",
            GrantType::RefreshToken => "refresh_token",
            GrantType::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
            GrantType::AuthorizationCode => "authorization_code",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// What an auth policy issues: JWTs (`/auth/jwt`) or opaque OAuth2 tokens (`/auth/token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    Jwt,
    Oauth2,
}

/// Access-token formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jwt,
    Opaque,
}

/// Access or refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

/// The scopes of OpenID Connect itself, which any user may grant.
pub const OIDC_SCOPES: [&str; 3] = ["openid", "profile", "email"];

/// How a caller got in: the kind of credential that was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WayIn {
    /// A JWT the gateway signed.
    Jwt,
    /// An opaque access token of the gateway.
    Opaque,
    /// An API key of a credential.
    ApiKey,
    /// A JWT of an external issuer.
    External,
}

impl WayIn {
    /// As the identity header and the access log say it.
    pub fn as_str(self) -> &'static str {
        match self {
            WayIn::Jwt => "jwt",
            WayIn::Opaque => "opaque",
            WayIn::ApiKey => "api_key",
            WayIn::External => "external",
        }
    }
}
