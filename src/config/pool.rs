//! Validation of an API's upstream pool: its servers (resolved at load), timeouts, Host
//! header, TLS and health check.

use super::errors::{Errors, duration};
use super::file::DurationText;
use super::upstreams_file::{HealthCheckFile, HostHeaderFile, UpstreamFile};
use super::{
    HealthCheck, HealthCheckKind, HostHeader, UpstreamConfig, UpstreamProtocol, UpstreamServer,
    UpstreamTls,
};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

pub(super) fn upstream(
    u: UpstreamFile,
    path: &str,
    base_dir: &Path,
    errs: &mut Errors,
) -> Option<UpstreamConfig> {
    let mut ok = true;
    if u.servers.is_empty() {
        errs.push(format!("{path}.servers"), "at least one server is needed");
        ok = false;
    }
    let mut servers = Vec::new();
    for (i, s) in u.servers.iter().enumerate() {
        match resolve_server(s) {
            Ok(addrs) => servers.extend(addrs.into_iter().map(|addr| UpstreamServer {
                addr,
                authority: s.trim().to_string(),
            })),
            Err(e) => {
                errs.push(format!("{path}.servers[{i}]"), e);
                ok = false;
            }
        }
    }
    let tls = match u.tls {
        None => None,
        Some(t) => {
            let verify = t.verify.unwrap_or(true);
            let ca_file = t.ca_file.map(|f| super::resolve_path(base_dir, &f));
            if let Some(f) = &ca_file
                && let Err(e) = std::fs::metadata(f)
            {
                errs.push(
                    format!("{path}.tls.ca_file"),
                    format!("cannot read {}: {e}", f.display()),
                );
                ok = false;
            }
            let sni = t.sni.or_else(|| {
                u.servers
                    .first()
                    .and_then(|s| s.rsplit_once(':'))
                    .map(|(host, _)| host.trim_matches(['[', ']']).to_string())
                    .filter(|h| h.parse::<IpAddr>().is_err())
            });
            match sni {
                Some(sni) => Some(UpstreamTls {
                    sni,
                    verify,
                    ca_file,
                }),
                None if !verify => Some(UpstreamTls {
                    sni: String::new(),
                    verify,
                    ca_file,
                }),
                None => {
                    errs.push(
                        format!("{path}.tls.sni"),
                        "needed to verify the certificate when servers are IP addresses (or set verify: false)",
                    );
                    ok = false;
                    None
                }
            }
        }
    };
    let host_header = match u.host_header {
        None | Some(HostHeaderFile::Pass) => HostHeader::Pass,
        Some(HostHeaderFile::Upstream) => HostHeader::Upstream,
        Some(HostHeaderFile::Set(v)) => {
            if v.is_empty() || http::HeaderValue::from_str(&v).is_err() {
                errs.push(
                    format!("{path}.host_header.set"),
                    format!("`{v}` is not a valid Host value"),
                );
                ok = false;
            }
            HostHeader::Set(v)
        }
    };
    let connect_timeout = duration(
        u.connect_timeout.as_ref().map(DurationText::as_str),
        format!("{path}.connect_timeout"),
        Duration::from_secs(5),
        errs,
    );
    let read_timeout = duration(
        u.read_timeout.as_ref().map(DurationText::as_str),
        format!("{path}.read_timeout"),
        Duration::from_secs(60),
        errs,
    );
    let write_timeout = duration(
        u.write_timeout.as_ref().map(DurationText::as_str),
        format!("{path}.write_timeout"),
        Duration::from_secs(60),
        errs,
    );
    let health_check = u
        .health_check
        .and_then(|h| health_check(h, &format!("{path}.health_check"), errs));
    let protocol = match u.protocol.as_deref() {
        None | Some("http1") => UpstreamProtocol::Http1,
        Some("h2") => UpstreamProtocol::H2,
        Some("h2c") => UpstreamProtocol::H2c,
        Some(other) => {
            errs.push(
                format!("{path}.protocol"),
                format!("unknown protocol `{other}` (expected http1, h2 or h2c)"),
            );
            ok = false;
            UpstreamProtocol::Http1
        }
    };
    match (protocol, tls.is_some()) {
        (UpstreamProtocol::H2, false) => {
            errs.push(
                format!("{path}.protocol"),
                "h2 is HTTP/2 over TLS: add `tls`, or use h2c for HTTP/2 without TLS",
            );
            ok = false;
        }
        (UpstreamProtocol::H2c, true) => {
            errs.push(
                format!("{path}.protocol"),
                "h2c is HTTP/2 without TLS: use h2 with `tls`",
            );
            ok = false;
        }
        _ => {}
    }
    // A retry goes to a server not tried yet, so there are at most as many as other
    // servers (as with nginx's proxy_next_upstream_tries); a name may resolve to more.
    let others = servers.len().saturating_sub(1);
    let retries = u.retries.map_or(others, |n| n.min(others));
    ok.then_some(UpstreamConfig {
        retries,
        servers,
        tls,
        host_header,
        connect_timeout,
        read_timeout,
        write_timeout,
        health_check,
        protocol,
    })
}

/// Why an upstream server address is refused.
#[derive(Debug, thiserror::Error)]
enum ServerError {
    #[error("`{0}` must be host:port (no scheme or path)")]
    SchemeOrPath(String),
    #[error("`{0}` must be host:port")]
    NoPort(String),
    #[error("`{0}` resolved to no address")]
    NoAddress(String),
    #[error("cannot resolve `{name}`: {source}")]
    Resolve {
        name: String,
        source: std::io::Error,
    },
}

fn resolve_server(s: &str) -> Result<Vec<SocketAddr>, ServerError> {
    let s = s.trim();
    if s.contains("://") || s.contains('/') {
        return Err(ServerError::SchemeOrPath(s.to_string()));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    if s.rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .is_none()
    {
        return Err(ServerError::NoPort(s.to_string()));
    }
    match s.to_socket_addrs() {
        Ok(it) => {
            let addrs: Vec<_> = it.collect();
            if addrs.is_empty() {
                Err(ServerError::NoAddress(s.to_string()))
            } else {
                Ok(addrs)
            }
        }
        Err(source) => Err(ServerError::Resolve {
            name: s.to_string(),
            source,
        }),
    }
}

fn health_check(h: HealthCheckFile, path: &str, errs: &mut Errors) -> Option<HealthCheck> {
    let (kind, interval, timeout, unhealthy_after, healthy_after) = match h {
        HealthCheckFile::Tcp {
            interval,
            timeout,
            unhealthy_after,
            healthy_after,
        } => (
            HealthCheckKind::Tcp,
            interval,
            timeout,
            unhealthy_after,
            healthy_after,
        ),
        HealthCheckFile::Http {
            path: check_path,
            interval,
            timeout,
            unhealthy_after,
            healthy_after,
        } => {
            let p = check_path.unwrap_or_else(|| "/".into());
            if !p.starts_with('/') || http::uri::PathAndQuery::try_from(p.as_str()).is_err() {
                errs.push(
                    format!("{path}.path"),
                    format!("`{p}` is not a request path"),
                );
                return None;
            }
            (
                HealthCheckKind::Http { path: p },
                interval,
                timeout,
                unhealthy_after,
                healthy_after,
            )
        }
    };
    let interval = duration(
        interval.as_ref().map(DurationText::as_str),
        format!("{path}.interval"),
        Duration::from_secs(5),
        errs,
    );
    let timeout = duration(
        timeout.as_ref().map(DurationText::as_str),
        format!("{path}.timeout"),
        Duration::from_secs(1),
        errs,
    );
    if interval < Duration::from_millis(10) {
        errs.push(format!("{path}.interval"), "must be at least 10ms");
    }
    for (key, v) in [
        ("unhealthy_after", unhealthy_after),
        ("healthy_after", healthy_after),
    ] {
        if v == Some(0) {
            errs.push(format!("{path}.{key}"), "must be at least 1");
        }
    }
    Some(HealthCheck {
        kind,
        interval,
        timeout,
        unhealthy_after: unhealthy_after.unwrap_or(3).max(1),
        healthy_after: healthy_after.unwrap_or(2).max(1),
    })
}
