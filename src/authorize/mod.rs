//! The authorization-code flow with PKCE (RFC 6749 §4.1, RFC 7636, RFC 9700) and a
//! minimal OpenID Connect provider: the authorize endpoint, the login and consent pages
//! tollgate serves itself, browser sessions, authorization codes, ID tokens, userinfo,
//! RP-initiated logout, and CORS for browser apps.

pub mod cookies;
pub mod pages;
pub mod pkce;
pub mod redirect;
