//! Mutual TLS (RFC 8705) test material: a client CA, client certificates it issues,
//! self-signed ones, the gateway's own server certificate, and HTTPS clients that present
//! a certificate.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
};
use std::time::{Duration, Instant};

/// A certificate and its key, PEM, with its DER.
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl CertKey {
    fn from(cert: &Certificate, key: &KeyPair) -> Self {
        CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// SHA-256 of the DER.
    pub fn sha256(&self) -> Vec<u8> {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.der)
            .as_ref()
            .to_vec()
    }

    /// As `tls_client_certificates: [{ sha256: ... }]` pins it.
    pub fn sha256_hex(&self) -> String {
        self.sha256().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// What `cnf["x5t#S256"]` of a token bound to it says.
    pub fn x5t(&self) -> String {
        B64.encode(self.sha256())
    }

    /// A reqwest identity (certificate and key).
    pub fn identity(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(format!("{}{}", self.cert_pem, self.key_pem).as_bytes())
            .unwrap()
    }
}

fn params(cn: &str, sans: &[&str]) -> CertificateParams {
    let mut p =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let mut dn = DistinguishedName::new();
    // ASN.1 order O, CN: RFC 4514 writes it `CN=<cn>,O=Example`.
    dn.push(DnType::OrganizationName, "Example");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p
}

/// A client CA.
pub struct Pki {
    cert: Certificate,
    key: KeyPair,
    pub ca_pem: String,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let mut p = params(name, &[]);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            cert,
            key,
        }
    }

    /// A client certificate `CN=<cn>,O=Example` with these DNS SANs, issued by the CA.
    pub fn client(&self, cn: &str, sans: &[&str]) -> CertKey {
        let key = KeyPair::generate().unwrap();
        let cert = params(cn, sans)
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        CertKey::from(&cert, &key)
    }
}

/// A self-signed certificate `CN=<cn>,O=Example` with these DNS SANs.
pub fn self_signed(cn: &str, sans: &[&str]) -> CertKey {
    let key = KeyPair::generate().unwrap();
    let cert = params(cn, sans).self_signed(&key).unwrap();
    CertKey::from(&cert, &key)
}

/// `listen:` entry of a TLS listener on `port` with the server certificate in
/// `server.pem`/`server-key.pem`, asking for client certificates (`mode`), with
/// `client-ca.pem` as its CA if `ca`.
pub fn listener(port: u16, mode: &str, ca: bool) -> String {
    format!(
        "  - addr: 127.0.0.1:{port}\n    tls: {{ cert: server.pem, key: server-key.pem, client_certificates: {mode}{} }}\n",
        if ca { ", client_ca: client-ca.pem" } else { "" }
    )
}

/// The files [`listener`] names: the server certificate (for `localhost`) and the CA.
pub fn listener_files(server: &CertKey, pki: &Pki) -> Vec<(String, String)> {
    vec![
        ("server.pem".into(), server.cert_pem.clone()),
        ("server-key.pem".into(), server.key_pem.clone()),
        ("client-ca.pem".into(), pki.ca_pem.clone()),
    ]
}

/// An HTTPS client for `https://localhost:<port>` trusting `server`, presenting `cert`.
pub fn client(server: &CertKey, port: u16, cert: Option<&CertKey>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(server.cert_pem.as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .http1_only();
    if let Some(c) = cert {
        b = b.identity(c.identity());
    }
    b.build().unwrap()
}

/// Wait until the TLS listener answers (the harness waits for the plain one only).
pub async fn wait_ready(client: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = format!("https://localhost:{port}/.well-known/jwks.json");
    loop {
        match client.get(&url).send().await {
            Ok(_) => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "TLS listener not ready: {e:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
