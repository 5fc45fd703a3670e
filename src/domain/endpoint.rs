//! The paths the token service answers (DESIGN.md's contract table) and their metric labels.

use super::ids::ApiName;
use super::oauth::{Family, Format};

/// The suffix of an API's own token endpoint: `<api prefix>/oauth2/v2/token`.
pub const API_TOKEN_SUFFIX: &str = "/oauth2/v2/token";
/// The suffix of an API's own authorization endpoint.
pub const API_AUTHORIZE_SUFFIX: &str = "/oauth2/v2/authorize";

/// The authorization endpoint of a family: seed 002's `/oauth2/v2/authorize` for
/// credentials, `/auth/authorize` for policies.
pub fn authorize_path(family: Family) -> &'static str {
    match family {
        Family::Auth => "/auth/authorize",
        Family::Credential => "/oauth2/v2/authorize",
    }
}

pub const USERINFO_PATH: &str = "/userinfo";
pub const LOGOUT_PATH: &str = "/oauth2/v2/logout";
/// RFC 9728 §3: an API's metadata is here, followed by the API's prefix.
pub const RESOURCE_METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// RFC 7591 registration; a registered client is managed (RFC 7592) under it, by id.
pub const REGISTER_PATH: &str = "/credential/register";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/{auth,credential}/token` (opaque) and `/{auth,credential}/jwt` (JWT).
    Token {
        family: Family,
        format: Format,
    },
    /// `/{auth,credential}/jwt/regenerate`: refresh a JWT.
    Regenerate(Family),
    /// RFC 7662.
    Introspect(Family),
    /// RFC 7009.
    Revoke(Family),
    /// `<api prefix>/oauth2/v2/token`: a JWT for one API (the API's name).
    ApiToken(ApiName),
    /// Seed 003: `/auth/{user,admin}/generateToken` and `/auth/{user,admin}/oidcToken`.
    Tenant {
        admin: bool,
        oidc: bool,
    },
    /// The authorization endpoint: `/oauth2/v2/authorize` and `/credential/authorize`
    /// (credentials), `/auth/authorize` (policies), `<api prefix>/oauth2/v2/authorize` (a
    /// credential's token for one API).
    Authorize {
        family: Family,
        api: Option<ApiName>,
    },
    /// The login form's answer.
    Login,
    /// The consent screen and its answer.
    Consent,
    /// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
    Logout,
    /// OpenID Connect userinfo.
    UserInfo,
    /// `/.well-known/openid-configuration`.
    OidcDiscovery,
    Jwks,
    Discovery,
    /// RFC 9728 protected-resource metadata of an API (its name):
    /// `/.well-known/oauth-protected-resource<api prefix>`.
    ResourceMetadata(ApiName),
    /// RFC 7591 registration (`None`) or RFC 7592 management of a registered client.
    Register(Option<super::ids::ClientId>),
    /// Under a reserved prefix but not an endpoint.
    Unknown,
}

impl Endpoint {
    /// The endpoint at `path`, for the fixed paths. API token endpoints need the route table
    /// and are found by the proxy.
    pub fn for_path(path: &str) -> Option<Self> {
        let family_path = |family: Family, rest: &str| match rest {
            "/token" => Endpoint::Token {
                family,
                format: Format::Opaque,
            },
            "/jwt" => Endpoint::Token {
                family,
                format: Format::Jwt,
            },
            "/jwt/regenerate" => Endpoint::Regenerate(family),
            "/authorize" => Endpoint::Authorize { family, api: None },
            "/introspect" => Endpoint::Introspect(family),
            "/revoke" => Endpoint::Revoke(family),
            _ => Endpoint::Unknown,
        };
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if let Some(rest) = under("/auth") {
            let tenant = |admin, oidc| Some(Endpoint::Tenant { admin, oidc });
            return match rest {
                "/user/generateToken" => tenant(false, false),
                "/admin/generateToken" => tenant(true, false),
                "/user/oidcToken" => tenant(false, true),
                "/admin/oidcToken" => tenant(true, true),
                _ => Some(family_path(Family::Auth, rest)),
            };
        }
        if let Some(rest) = under("/credential") {
            if rest == "/register" {
                return Some(Endpoint::Register(None));
            }
            if let Some(id) = rest.strip_prefix("/register/") {
                return Some(match percent_decoded(id) {
                    Some(id) if !id.is_empty() && !id.contains('/') => {
                        Endpoint::Register(Some(super::ids::ClientId::new(id)))
                    }
                    _ => Endpoint::Unknown,
                });
            }
            return Some(family_path(Family::Credential, rest));
        }
        if let Some(rest) = under("/oauth2") {
            return Some(match rest {
                "/v2/authorize" => Endpoint::Authorize {
                    family: Family::Credential,
                    api: None,
                },
                "/v2/login" => Endpoint::Login,
                "/v2/consent" => Endpoint::Consent,
                "/v2/logout" => Endpoint::Logout,
                _ => Endpoint::Unknown,
            });
        }
        if path == "/userinfo" {
            return Some(Endpoint::UserInfo);
        }
        under("/.well-known").map(|rest| match rest {
            "/jwks.json" | "/jwks" => Endpoint::Jwks,
            "/oauth-authorization-server" => Endpoint::Discovery,
            "/openid-configuration" => Endpoint::OidcDiscovery,
            _ => Endpoint::Unknown,
        })
    }

    /// The bounded `endpoint` metric label.
    pub fn label(&self) -> &'static str {
        use Family::{Auth, Credential};
        use Format::{Jwt, Opaque};
        match self {
            Endpoint::Token {
                family: Auth,
                format: Opaque,
            } => "/auth/token",
            Endpoint::Token {
                family: Auth,
                format: Jwt,
            } => "/auth/jwt",
            Endpoint::Token {
                family: Credential,
                format: Opaque,
            } => "/credential/token",
            Endpoint::Token {
                family: Credential,
                format: Jwt,
            } => "/credential/jwt",
            Endpoint::Regenerate(Auth) => "/auth/jwt/regenerate",
            Endpoint::Regenerate(Credential) => "/credential/jwt/regenerate",
            Endpoint::Introspect(Auth) => "/auth/introspect",
            Endpoint::Introspect(Credential) => "/credential/introspect",
            Endpoint::Revoke(Auth) => "/auth/revoke",
            Endpoint::Revoke(Credential) => "/credential/revoke",
            Endpoint::ApiToken(_) => "api_token",
            Endpoint::Authorize {
                family: Auth,
                api: None,
            } => "/auth/authorize",
            Endpoint::Authorize {
                family: Credential,
                api: None,
            } => "/oauth2/v2/authorize",
            Endpoint::Authorize { api: Some(_), .. } => "api_authorize",
            Endpoint::Login => "login",
            Endpoint::Consent => "consent",
            Endpoint::Logout => "logout",
            Endpoint::UserInfo => "userinfo",
            Endpoint::OidcDiscovery => "openid_configuration",
            Endpoint::Tenant {
                admin: false,
                oidc: false,
            } => "/auth/user/generateToken",
            Endpoint::Tenant {
                admin: true,
                oidc: false,
            } => "/auth/admin/generateToken",
            Endpoint::Tenant {
                admin: false,
                oidc: true,
            } => "/auth/user/oidcToken",
            Endpoint::Tenant {
                admin: true,
                oidc: true,
            } => "/auth/admin/oidcToken",
            Endpoint::Jwks => "jwks",
            Endpoint::Discovery => "discovery",
            Endpoint::ResourceMetadata(_) => "protected_resource",
            Endpoint::Register(_) => "/credential/register",
            Endpoint::Unknown => "unknown",
        }
    }

    /// Whether the handler reads the request body.
    pub fn reads_body(&self) -> bool {
        !matches!(
            self,
            Endpoint::Jwks
                | Endpoint::Discovery
                | Endpoint::OidcDiscovery
                | Endpoint::ResourceMetadata(_)
                | Endpoint::Unknown
        )
    }
}

/// `%XX` decoded (a client id in a path); `None` for a bad escape or non-UTF-8 text.
pub fn percent_decoded(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_path_is_an_endpoint() {
        for (family, prefix) in [(Family::Auth, "/auth"), (Family::Credential, "/credential")] {
            let at = |p: &str| Endpoint::for_path(&format!("{prefix}{p}"));
            assert_eq!(
                at("/token"),
                Some(Endpoint::Token {
                    family,
                    format: Format::Opaque
                })
            );
            assert_eq!(
                at("/jwt"),
                Some(Endpoint::Token {
                    family,
                    format: Format::Jwt
                })
            );
            assert_eq!(at("/jwt/regenerate"), Some(Endpoint::Regenerate(family)));
            assert_eq!(at("/introspect"), Some(Endpoint::Introspect(family)));
            assert_eq!(at("/revoke"), Some(Endpoint::Revoke(family)));
            assert_eq!(at("/other"), Some(Endpoint::Unknown));
            assert_eq!(at(""), Some(Endpoint::Unknown));
        }
        assert_eq!(
            Endpoint::for_path("/.well-known/jwks"),
            Some(Endpoint::Jwks)
        );
        assert_eq!(
            Endpoint::for_path("/.well-known/jwks.json"),
            Some(Endpoint::Jwks)
        );
        assert_eq!(
            Endpoint::for_path("/.well-known/oauth-authorization-server"),
            Some(Endpoint::Discovery)
        );
        assert_eq!(
            Endpoint::for_path("/.well-known/x"),
            Some(Endpoint::Unknown)
        );
        assert_eq!(
            Endpoint::for_path("/auth/admin/oidcToken"),
            Some(Endpoint::Tenant {
                admin: true,
                oidc: true
            })
        );
        assert_eq!(
            Endpoint::for_path("/auth/user/generateToken"),
            Some(Endpoint::Tenant {
                admin: false,
                oidc: false
            })
        );
        for (path, family) in [
            ("/oauth2/v2/authorize", Family::Credential),
            ("/credential/authorize", Family::Credential),
            ("/auth/authorize", Family::Auth),
        ] {
            assert_eq!(
                Endpoint::for_path(path),
                Some(Endpoint::Authorize { family, api: None })
            );
        }
        assert_eq!(
            Endpoint::for_path("/oauth2/v2/login"),
            Some(Endpoint::Login)
        );
        assert_eq!(
            Endpoint::for_path("/oauth2/v2/consent"),
            Some(Endpoint::Consent)
        );
        assert_eq!(
            Endpoint::for_path("/oauth2/v2/logout"),
            Some(Endpoint::Logout)
        );
        assert_eq!(Endpoint::for_path("/oauth2/v2/x"), Some(Endpoint::Unknown));
        assert_eq!(Endpoint::for_path("/userinfo"), Some(Endpoint::UserInfo));
        assert_eq!(Endpoint::for_path("/userinfo/x"), None);
        assert_eq!(
            Endpoint::for_path("/.well-known/openid-configuration"),
            Some(Endpoint::OidcDiscovery)
        );
        assert_eq!(Endpoint::for_path("/authors"), None);
        assert_eq!(Endpoint::for_path("/orders/oauth2/v2/token"), None);
    }
}
