//! The authorization-code flow with PKCE: the login and consent pages tollgate serves
//! itself. The endpoint, sessions and codes arrive next to these pages.

pub mod pages;
