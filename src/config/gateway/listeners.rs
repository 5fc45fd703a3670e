//! `listen:`: the client-facing listeners, their TLS and client certificates (RFC 8705),
//! and the checks that need both files: a client that authenticates with its certificate
//! needs a listener that asks for one.

use super::super::errors::{ConfigError, Errors, Lenient};
use super::super::file::ClientCertificatesFile;
use super::super::{
    ClientCertMode, ClientCertSupport, Listener, TlsListener, resolve_path, upstreams,
};
use super::{DEFAULT_LISTEN, parse_addr};
use std::path::Path;

/// A CA bundle: readable, with at least one certificate.
fn check_ca_file(file: &Path) -> Result<(), String> {
    let text = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let blocks = pem::parse_many(&text).map_err(|e| format!("{}: not PEM: {e}", file.display()))?;
    if !blocks.iter().any(|b| b.tag() == "CERTIFICATE") {
        return Err(format!("{} holds no CERTIFICATE", file.display()));
    }
    Ok(())
}

/// Clients of the upstreams file at `file` that need client certificates, checked
/// against what the listeners offer: a `tls_client_auth` client needs a listener with a
/// `client_ca`, a `self_signed_tls_client_auth` one or one whose tokens are bound to its
/// certificate a listener that asks for certificates at all.
pub(super) fn certificate_clients(
    catalog: &upstreams::Catalog,
    support: ClientCertSupport,
    file: &Path,
) -> Vec<ConfigError> {
    let mut errs = Errors::new(file.display().to_string());
    let clients = catalog
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("policies[{i}]"), &p.client))
        .chain(
            catalog
                .credentials
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("credentials[{i}]"), &c.client)),
        );
    for (path, client) in clients {
        if let Some(auth) = &client.certificate_auth {
            let pki = matches!(auth, crate::domain::certificate::CertificateAuth::Pki(_));
            if !support.any {
                errs.push(
                    format!("{path}.token_endpoint_auth_method"),
                    format!(
                        "{} needs a TLS listener with `client_certificates: request` or `require`",
                        auth.method()
                    ),
                );
            } else if pki && !support.with_ca {
                errs.push(
                    format!("{path}.token_endpoint_auth_method"),
                    "tls_client_auth needs a TLS listener with a `client_ca` its certificates chain to",
                );
            }
        }
        if client.token.certificate_bound && !support.any {
            errs.push(
                format!("{path}.tls_client_certificate_bound_access_tokens"),
                "needs a TLS listener with `client_certificates: request` or `require`",
            );
        }
    }
    errs.into_vec()
}

/// `discovery.mtls_endpoint_base`: an https URL without path, query or fragment, of a
/// listener that asks for client certificates.
pub(super) fn mtls_endpoint_base(
    value: Option<String>,
    support: ClientCertSupport,
    errs: &mut Errors,
) -> Option<String> {
    let value = value?;
    let key = "discovery.mtls_endpoint_base";
    let trimmed = value.trim().trim_end_matches('/').to_string();
    let ok = url::Url::parse(&trimmed).is_ok_and(|u| {
        u.scheme() == "https"
            && u.host().is_some()
            && u.path() == "/"
            && u.query().is_none()
            && u.fragment().is_none()
    });
    if !ok {
        errs.push(
            key,
            format!("`{value}` is not an https URL without path (e.g. https://mtls.example.com)"),
        );
    }
    if !support.any {
        errs.push(
            key,
            "no TLS listener asks for client certificates (`client_certificates: request`)",
        );
    }
    Some(trimmed)
}

/// Client connections per listener (`listen[].max_connections`), well under the fd limit
/// the systemd unit sets.
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

pub(super) fn listeners(
    section: Option<Lenient<Vec<Lenient<super::super::file::ListenFile>>>>,
    base_dir: &Path,
    errs: &mut Errors,
) -> Vec<Listener> {
    let Some(section) = section else {
        return parse_addr(DEFAULT_LISTEN, "listen", errs)
            .map(|addr| {
                vec![Listener {
                    addr,
                    tls: None,
                    h2c: false,
                    max_connections: DEFAULT_MAX_CONNECTIONS,
                }]
            })
            .unwrap_or_default();
    };
    let Some(items) = section.take("listen", errs) else {
        return Vec::new();
    };
    if items.is_empty() {
        errs.push("listen", "at least one listener is needed");
    }
    let mut out: Vec<Listener> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("listen[{i}]");
        let Some(l) = item.take(&path, errs) else {
            continue;
        };
        let Some(addr) = parse_addr(&l.addr, &format!("{path}.addr"), errs) else {
            continue;
        };
        if out.iter().any(|o| o.addr == addr) {
            errs.push(format!("{path}.addr"), format!("{addr} is listed twice"));
            continue;
        }
        let tls = l.tls.map(|t| tls_listener(t, &path, base_dir, errs));
        let h2c = l.h2c.unwrap_or(false);
        if h2c && tls.is_some() {
            errs.push(
                format!("{path}.h2c"),
                "h2c is HTTP/2 without TLS; a TLS listener offers HTTP/2 by ALPN (tls.http2)",
            );
        }
        let max_connections = l.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            errs.push(format!("{path}.max_connections"), "must be at least 1");
        }
        out.push(Listener {
            addr,
            tls,
            h2c,
            max_connections,
        });
    }
    // Pingora's h2c switch covers every plain listener of the proxy at once.
    let plain: Vec<&Listener> = out.iter().filter(|l| l.tls.is_none()).collect();
    if plain.iter().any(|l| l.h2c) && plain.iter().any(|l| !l.h2c) {
        errs.push(
            "listen",
            "h2c must be the same on every plain listener (set `h2c: true` on all of them or none)",
        );
    }
    out
}

/// `tls:` of a listener at `path` (a client listener or the admin listener).
pub(super) fn tls_listener(
    t: super::super::file::TlsListenFile,
    path: &str,
    base_dir: &Path,
    errs: &mut Errors,
) -> TlsListener {
    let cert = resolve_path(base_dir, &t.cert);
    let key = resolve_path(base_dir, &t.key);
    for (k, p) in [("cert", &cert), ("key", &key)] {
        if let Err(e) = std::fs::metadata(p) {
            errs.push(
                format!("{path}.tls.{k}"),
                format!("cannot read {}: {e}", p.display()),
            );
        }
    }
    let client_certificates = match t.client_certificates {
        None | Some(ClientCertificatesFile::Off) => ClientCertMode::Off,
        Some(ClientCertificatesFile::Request) => ClientCertMode::Request,
        Some(ClientCertificatesFile::Require) => ClientCertMode::Require,
    };
    let client_ca = t.client_ca.map(|ca| {
        let file = resolve_path(base_dir, &ca);
        if let Err(e) = check_ca_file(&file) {
            errs.push(format!("{path}.tls.client_ca"), e);
        }
        if client_certificates == ClientCertMode::Off {
            errs.push(
                format!("{path}.tls.client_ca"),
                "needs `client_certificates: request` or `require`",
            );
        }
        file
    });
    TlsListener {
        cert,
        key,
        http2: t.http2.unwrap_or(true),
        client_certificates,
        client_ca,
    }
}
