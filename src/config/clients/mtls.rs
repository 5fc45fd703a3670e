//! Clients that authenticate with a TLS client certificate (RFC 8705 §2):
//! `tls_client_auth` names the certificate's subject (exactly one of the subject DN and
//! the four SAN kinds), `self_signed_tls_client_auth` pins the certificates themselves.
//! Neither has a secret.

use super::super::errors::Errors;
use super::super::resolve_path;
use super::super::upstreams_file::{AuthMethodFile, PinnedCertificateFile};
use super::parse_sha256;
use crate::domain::certificate::{CertificateAuth, DistinguishedName, SubjectMatcher};
use std::path::Path;

/// The certificate fields of a client, as written.
pub(in crate::config) struct CertificateFields {
    pub subject_dn: Option<String>,
    pub san_dns: Option<String>,
    pub san_uri: Option<String>,
    pub san_ip: Option<String>,
    pub san_email: Option<String>,
    pub pins: Vec<PinnedCertificateFile>,
}

/// The rest of the client that decides whether its certificate fields make sense.
pub(super) struct Context<'a> {
    pub method: Option<AuthMethodFile>,
    pub has_secret: bool,
    pub public: bool,
    pub path: &'a str,
    pub base_dir: &'a Path,
}

fn matcher(key: &str, value: &str) -> Result<SubjectMatcher, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("empty".into());
    }
    Ok(match key {
        "tls_client_auth_subject_dn" => SubjectMatcher::SubjectDn(
            DistinguishedName::parse(value).map_err(|e| format!("`{value}`: {e}"))?,
        ),
        "tls_client_auth_san_dns" => SubjectMatcher::SanDns(value.to_string()),
        "tls_client_auth_san_uri" => SubjectMatcher::SanUri(value.to_string()),
        "tls_client_auth_san_ip" => SubjectMatcher::SanIp(
            value
                .parse()
                .map_err(|_| format!("`{value}` is not an IP address"))?,
        ),
        _ if value.contains('@') => SubjectMatcher::SanEmail(value.to_string()),
        _ => return Err(format!("`{value}` is not an email address")),
    })
}

/// SHA-256 of the first certificate in a PEM file.
fn pem_digest(file: &Path) -> Result<[u8; 32], String> {
    let text = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let blocks = pem::parse_many(&text).map_err(|e| format!("{}: not PEM: {e}", file.display()))?;
    let cert = blocks
        .iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .ok_or_else(|| format!("{} holds no CERTIFICATE", file.display()))?;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.contents());
    <[u8; 32]>::try_from(d.as_ref()).map_err(|_| "not a SHA-256".to_string())
}

fn pins(list: Vec<PinnedCertificateFile>, cx: &Context, errs: &mut Errors) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for (i, p) in list.into_iter().enumerate() {
        let ppath = format!("{}.tls_client_certificates[{i}]", cx.path);
        match (p.sha256, p.pem) {
            (Some(hex), None) => match parse_sha256(&hex) {
                Some(d) => out.push(d),
                None => errs.push(
                    format!("{ppath}.sha256"),
                    "64 hex digits: the SHA-256 of the certificate's DER",
                ),
            },
            (None, Some(file)) => match pem_digest(&resolve_path(cx.base_dir, &file)) {
                Ok(d) => out.push(d),
                Err(e) => errs.push(format!("{ppath}.pem"), e),
            },
            _ => errs.push(ppath, "give either `sha256` or `pem`"),
        }
    }
    out
}

/// How the client authenticates with its certificate, if it does; every impossible
/// combination is reported at its key.
pub(super) fn certificate_auth(
    f: CertificateFields,
    cx: &Context,
    errs: &mut Errors,
) -> Option<CertificateAuth> {
    let path = cx.path;
    let named: Vec<(&str, String)> = [
        ("tls_client_auth_subject_dn", f.subject_dn),
        ("tls_client_auth_san_dns", f.san_dns),
        ("tls_client_auth_san_uri", f.san_uri),
        ("tls_client_auth_san_ip", f.san_ip),
        ("tls_client_auth_san_email", f.san_email),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let certificate = matches!(
        cx.method,
        Some(AuthMethodFile::TlsClientAuth | AuthMethodFile::SelfSignedTlsClientAuth)
    );
    if certificate && cx.has_secret {
        errs.push(
            format!("{path}.client_secret_hash"),
            "a client that authenticates with its TLS certificate has no secret",
        );
    }
    if certificate && cx.public {
        errs.push(
            format!("{path}.public"),
            "a client that authenticates with its TLS certificate is not public",
        );
    }
    if cx.method != Some(AuthMethodFile::TlsClientAuth) {
        for (k, _) in &named {
            errs.push(
                format!("{path}.{k}"),
                "needs `token_endpoint_auth_method: tls_client_auth`",
            );
        }
    }
    if cx.method != Some(AuthMethodFile::SelfSignedTlsClientAuth) && !f.pins.is_empty() {
        errs.push(
            format!("{path}.tls_client_certificates"),
            "needs `token_endpoint_auth_method: self_signed_tls_client_auth`",
        );
    }
    match cx.method {
        Some(AuthMethodFile::TlsClientAuth) => {
            let (key, value) = match named.as_slice() {
                [one] => one,
                [] => {
                    errs.push(
                        format!("{path}.token_endpoint_auth_method"),
                        "tls_client_auth needs the certificate's subject: one of \
                         tls_client_auth_subject_dn, tls_client_auth_san_dns, \
                         tls_client_auth_san_uri, tls_client_auth_san_ip, tls_client_auth_san_email",
                    );
                    return None;
                }
                [_, rest @ ..] => {
                    for (k, _) in rest {
                        errs.push(
                            format!("{path}.{k}"),
                            "tls_client_auth takes exactly one subject (RFC 8705 §2.1.2)",
                        );
                    }
                    return None;
                }
            };
            match matcher(key, value) {
                Ok(m) => Some(CertificateAuth::Pki(m)),
                Err(e) => {
                    errs.push(format!("{path}.{key}"), e);
                    None
                }
            }
        }
        Some(AuthMethodFile::SelfSignedTlsClientAuth) => {
            if f.pins.is_empty() {
                errs.push(
                    format!("{path}.tls_client_certificates"),
                    "self_signed_tls_client_auth needs the client's certificates \
                     (`- sha256: <hex>` or `- pem: <file>`)",
                );
                return None;
            }
            let pins = pins(f.pins, cx, errs);
            (!pins.is_empty()).then_some(CertificateAuth::SelfSigned(pins))
        }
        _ => None,
    }
}
