//! TLS listener settings, and the client certificate of a connection (RFC 8705).
//!
//! A listener with `client_certificates: request|require` asks the client for a
//! certificate. The handshake takes any certificate whose key the client proves it holds
//! (the verify callback accepts whatever the chain check says), so one listener serves
//! certificates from the `client_ca` (`tls_client_auth`) and self-signed ones pinned per
//! client (`self_signed_tls_client_auth`) alike; `require` fails a handshake without any.
//! Whether the chain verified against `client_ca` is kept with the certificate's subject
//! and SANs in the TLS digest's extension ([`ClientCertificate`]), and the token service
//! decides per client what it accepts. A certificate-bound token needs only the very
//! certificate (its SHA-256), which the proxy compares.

use crate::config::{ClientCertMode, TlsListener};
use crate::domain::certificate::{ClientCertificate, DistinguishedName, name_attribute_oids};
use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::tls::TlsRef;
use pingora::tls::hash::MessageDigest;
use pingora::tls::ssl::SslVerifyMode;
use pingora::tls::x509::{X509, X509Name, X509VerifyResult};
use std::any::Any;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a TLS listener cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {} / key {}: {source}", cert.display(), key.display())]
    Load {
        cert: PathBuf,
        key: PathBuf,
        source: Box<pingora::Error>,
    },
    #[error("cannot load the client CA file {file}: {source}")]
    ClientCa {
        file: PathBuf,
        source: pingora::tls::error::ErrorStack,
    },
    #[error("TLS settings: {0}")]
    Settings(pingora::tls::error::ErrorStack),
}

/// The settings of one TLS listener.
pub fn settings(t: &TlsListener) -> Result<TlsSettings, TlsError> {
    let load = |source| TlsError::Load {
        cert: t.cert.clone(),
        key: t.key.clone(),
        source,
    };
    let mut settings = match t.client_certificates {
        ClientCertMode::Off => {
            TlsSettings::intermediate(&t.cert.to_string_lossy(), &t.key.to_string_lossy())
                .map_err(load)?
        }
        mode => {
            let mut s = TlsSettings::with_callbacks(Box::new(ClientCertificates {
                with_ca: t.client_ca.is_some(),
            }))
            .map_err(load)?;
            let file_error = |what: &str, e| {
                load(pingora::Error::because(
                    pingora::ErrorType::InternalError,
                    format!("cannot load the {what}"),
                    e,
                ))
            };
            s.set_private_key_file(&t.key, pingora::tls::ssl::SslFiletype::PEM)
                .map_err(|e| file_error("private key", e))?;
            s.set_certificate_chain_file(&t.cert)
                .map_err(|e| file_error("certificate chain", e))?;
            s.check_private_key()
                .map_err(|e| file_error("key of the certificate", e))?;
            if let Some(ca) = &t.client_ca {
                let ca_error = |source| TlsError::ClientCa {
                    file: ca.clone(),
                    source,
                };
                s.set_ca_file(ca).map_err(ca_error)?;
                s.set_client_ca_list(X509Name::load_client_ca_file(ca).map_err(ca_error)?);
            }
            let verify = match mode {
                ClientCertMode::Require => {
                    SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
                }
                _ => SslVerifyMode::PEER,
            };
            // Any certificate the client holds the key of: the chain's verdict is read
            // afterwards (SSL_get_verify_result) and applied per client.
            s.set_verify_callback(verify, |_preverified, _ctx| true);
            // Resumed sessions keep their certificate and verdict; OpenSSL refuses to
            // resume a session with client verification on and no id context.
            s.set_session_id_context(b"tollgate-mtls")
                .map_err(TlsError::Settings)?;
            s
        }
    };
    if t.http2 {
        settings.enable_h2();
    }
    Ok(settings)
}

/// Reads the client certificate once the handshake is done.
struct ClientCertificates {
    with_ca: bool,
}

#[async_trait]
impl TlsAccept for ClientCertificates {
    async fn handshake_complete_callback(
        &self,
        ssl: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let cert = ssl.peer_certificate()?;
        let verified = self.with_ca && ssl.verify_result() == X509VerifyResult::OK;
        let info = describe(&cert, verified)?;
        Some(Arc::new(info))
    }
}

/// What the gateway keeps of a client certificate.
fn describe(cert: &X509, chain_verified: bool) -> Option<ClientCertificate> {
    let digest = cert.digest(MessageDigest::sha256()).ok()?;
    let sha256 = <[u8; 32]>::try_from(digest.as_ref()).ok()?;
    // ASN.1 order is the least specific first; RFC 4514 writes the most specific first.
    let name = cert.subject_name();
    let oids = name_attribute_oids(&name.to_der().ok()?)?;
    let mut subject = Vec::new();
    for (oid, entry) in oids.into_iter().zip(name.entries()) {
        subject.push((oid, entry.data().to_string().ok()?));
    }
    subject.reverse();
    let mut info = ClientCertificate {
        sha256,
        subject: DistinguishedName(subject),
        san_dns: Vec::new(),
        san_uri: Vec::new(),
        san_ip: Vec::new(),
        san_email: Vec::new(),
        chain_verified,
    };
    for name in cert.subject_alt_names().into_iter().flatten() {
        if let Some(d) = name.dnsname() {
            info.san_dns.push(d.to_string());
        } else if let Some(u) = name.uri() {
            info.san_uri.push(u.to_string());
        } else if let Some(e) = name.email() {
            info.san_email.push(e.to_string());
        } else if let Some(ip) = name.ipaddress() {
            match ip.len() {
                4 => info
                    .san_ip
                    .push(IpAddr::from(<[u8; 4]>::try_from(ip).ok()?)),
                16 => info
                    .san_ip
                    .push(IpAddr::from(<[u8; 16]>::try_from(ip).ok()?)),
                _ => {}
            }
        }
    }
    Some(info)
}
