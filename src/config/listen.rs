//! Client-facing listeners: address, TLS, and whether a TLS listener asks clients for a
//! certificate (RFC 8705 mutual TLS).

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Listener {
    pub addr: SocketAddr,
    pub tls: Option<TlsListener>,
    /// A plain listener that also takes HTTP/2 with prior knowledge (h2c, as gRPC clients
    /// without TLS speak it).
    pub h2c: bool,
    /// Client connections open at once; one more is closed at once.
    pub max_connections: usize,
}

#[derive(Debug, Clone)]
pub struct TlsListener {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub http2: bool,
    /// Whether the handshake asks for a client certificate.
    pub client_certificates: ClientCertMode,
    /// PEM CA certificates a `tls_client_auth` client's certificate must chain to (and
    /// whose names the handshake sends as acceptable issuers).
    pub client_ca: Option<PathBuf>,
}

/// `tls.client_certificates`. The handshake takes any certificate the client proves it
/// holds the key of; what it is good for is decided per request: a certificate-bound
/// token needs the very certificate, `tls_client_auth` a chain to `client_ca`,
/// `self_signed_tls_client_auth` a pinned certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCertMode {
    /// No certificate is asked for.
    #[default]
    Off,
    /// A certificate is asked for; a client without one connects all the same.
    Request,
    /// A handshake without a certificate fails.
    Require,
}

/// What the listeners offer clients that authenticate with certificates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCertSupport {
    /// Some TLS listener asks for client certificates.
    pub any: bool,
    /// Some such listener verifies chains against a `client_ca`.
    pub with_ca: bool,
}

impl ClientCertSupport {
    pub fn of(listeners: &[Listener]) -> Self {
        let asking = || {
            listeners
                .iter()
                .filter_map(|l| l.tls.as_ref())
                .filter(|t| t.client_certificates != ClientCertMode::Off)
        };
        Self {
            any: asking().next().is_some(),
            with_ca: asking().any(|t| t.client_ca.is_some()),
        }
    }
}
