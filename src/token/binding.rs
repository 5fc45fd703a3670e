//! Mutual TLS at the token endpoints (RFC 8705): clients that authenticate with their
//! certificate (§2), and what issued tokens are bound to (§3, and RFC 9449 for DPoP).

use super::client_auth::PresentedClient;
use super::error::OAuthError;
use super::proof::invalid_proof;
use crate::catalog::registry::Client;
use crate::domain::certificate::{CertificateAuth, ClientCertificate};
use crate::domain::cnf::Confirmation;
use std::sync::Arc;

/// Authenticate a client registered for `tls_client_auth` or
/// `self_signed_tls_client_auth` by the certificate of the connection. It sends no secret;
/// a wrong certificate is `invalid_client` like a wrong secret. No attempt counting: a
/// certificate cannot be guessed, its key is proven in the handshake.
pub(super) fn certificate_client(
    client: &Arc<Client>,
    auth: &CertificateAuth,
    presented: &PresentedClient,
    cert: Option<&ClientCertificate>,
) -> Result<Arc<Client>, OAuthError> {
    if presented.secret.is_some() {
        return Err(presented
            .rejected("this client authenticates with its TLS client certificate, not a secret"));
    }
    let Some(cert) = cert else {
        return Err(presented
            .rejected("this client authenticates with a TLS client certificate: connect with it"));
    };
    if !auth.accepts(cert) {
        log::debug!(
            "client {}: certificate {} (chain verified: {}) does not match its {}",
            client.id,
            cert.subject,
            cert.chain_verified,
            auth.method()
        );
        return Err(
            presented.rejected("the TLS client certificate does not authenticate this client")
        );
    }
    Ok(client.clone())
}

/// What the tokens issued to `client` are bound to, given the request's DPoP proof (its
/// key's thumbprint, already checked) and its client certificate. One rule, in order:
///
/// 1. A DPoP proof binds them to its key (`cnf.jkt`, token type `DPoP`), over mutual
///    TLS too: the proof names the key the client chose for these tokens. A client
///    registered for certificate-bound tokens must not send one.
/// 2. A certificate binds them (`cnf["x5t#S256"]`, token type `Bearer`, RFC 8705 §3)
///    when the client authenticated with it, or is registered with
///    `tls_client_certificate_bound_access_tokens` (which then requires one).
/// 3. Otherwise they are bearer tokens; a client registered with
///    `dpop_bound_access_tokens` gets none without a proof (RFC 9449 §5.2).
///
/// A client that authenticated with a secret over a connection with a certificate is
/// not bound unless registered so: binding a token it did not ask for would break a
/// client whose API calls leave over other connections (Hydra and Keycloak do the same).
pub(super) fn binding(
    client: &Client,
    proven: Option<Confirmation>,
    cert: Option<&ClientCertificate>,
) -> Result<Option<Confirmation>, OAuthError> {
    if let Some(jkt) = proven {
        if client.token.certificate_bound {
            return Err(OAuthError::invalid_request(
                "this client's tokens are bound to its TLS client certificate: send no DPoP proof",
            ));
        }
        return Ok(Some(jkt));
    }
    if client.token.dpop_bound {
        return Err(invalid_proof(
            "this client must send a DPoP proof with every token request",
        ));
    }
    let by_certificate = client.certificate_auth.is_some() || client.token.certificate_bound;
    match cert {
        Some(c) if by_certificate => Ok(Some(Confirmation::X5tS256(c.sha256))),
        None if client.token.certificate_bound => Err(OAuthError::invalid_request(
            "this client's tokens are bound to its TLS client certificate: connect with one",
        )),
        _ => Ok(None),
    }
}
