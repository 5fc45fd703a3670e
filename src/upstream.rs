//! Upstream pools: round robin over an API's servers, their active health checks
//! (pingora-load-balancing, run by the catalog's reloader), and the `HttpPeer` each request
//! connects to, built once per server.

use crate::config::{HealthCheckKind, HostHeader, UpstreamConfig, UpstreamProtocol};
use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Concurrent HTTP/2 streams tollgate opens on one upstream connection.
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// One API's servers and how to reach them.
pub struct Pool {
    /// Consulted only when the pool has health checks (it knows which servers are up).
    lb: Arc<LoadBalancer<RoundRobin>>,
    servers: Box<[Server]>,
    /// Round robin over `servers` when no health check can take one out.
    next: AtomicUsize,
    pub host_header: HostRewrite,
    pub size: usize,
    /// Further servers a request may try after a connect failure (`upstream.retries`).
    pub retries: usize,
    health_checked: bool,
}

/// One server of a pool, everything a request to it needs built in advance.
pub struct Server {
    pub addr: SocketAddr,
    peer: HttpPeer,
    /// `host:port` as configured, for `host_header: upstream`.
    pub authority: HeaderValue,
}

impl Server {
    /// The peer Pingora connects to (a copy: `upstream_peer` hands over a box).
    pub fn peer(&self) -> Box<HttpPeer> {
        Box::new(self.peer.clone())
    }
}

/// The `Host` header of the upstream request, its value prepared once.
pub enum HostRewrite {
    /// The client's, unchanged.
    Pass,
    /// The chosen server's configured `host:port`.
    Upstream,
    Set(HeaderValue),
}

/// Why an upstream pool cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot build the upstream pool: {0}")]
    LoadBalancer(std::io::Error),
    #[error("an upstream pool needs a server")]
    NoServer,
    #[error("bad health-check request: {0}")]
    HealthCheck(Box<pingora::Error>),
    #[error("bad server authority `{authority}`: {source}")]
    Authority {
        authority: String,
        source: http::header::InvalidHeaderValue,
    },
    #[error("bad host_header `{value}`: {source}")]
    HostHeader {
        value: String,
        source: http::header::InvalidHeaderValue,
    },
    #[error("cannot read {}: {source}", path.display())]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a PEM certificate file: {source}", path.display())]
    BadCa {
        path: PathBuf,
        source: pingora::tls::error::ErrorStack,
    },
    #[error("{}: no certificate in the file", path.display())]
    EmptyCa { path: PathBuf },
}

impl Pool {
    /// `id` keeps this pool's idle connections apart from every other pool's: Pingora's
    /// reuse key covers address, SNI and verification flags but not the trusted CAs, so
    /// two APIs sharing a server must not share connections.
    pub fn new(
        cfg: &UpstreamConfig,
        id: u64,
        lowercase_header_names: bool,
    ) -> Result<Self, PoolError> {
        let addrs: Vec<SocketAddr> = cfg.servers.iter().map(|s| s.addr).collect();
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(addrs.iter().copied())
            .map_err(PoolError::LoadBalancer)?;
        let (tls, sni) = match &cfg.tls {
            Some(t) => (true, t.sni.clone()),
            None => (false, String::new()),
        };
        let first = addrs.first().copied().ok_or(PoolError::NoServer)?;
        let mut template = HttpPeer::new(first, tls, sni.clone());
        template.group_key = id;
        template.options.connection_timeout = Some(cfg.connect_timeout);
        template.options.read_timeout = Some(cfg.read_timeout);
        template.options.write_timeout = Some(cfg.write_timeout);
        // `server.header_case: lowercase`: responses parsed without their names' case.
        template.options.h1_lowercase_header_names = lowercase_header_names;
        // HTTP/2 only, when asked: over TLS agreed by ALPN, without TLS by prior knowledge.
        // Pingora multiplexes requests over its pooled HTTP/2 connections.
        let alpn = match cfg.protocol {
            UpstreamProtocol::Http1 => ALPN::H1,
            UpstreamProtocol::H2 | UpstreamProtocol::H2c => ALPN::H2,
        };
        template.options.alpn = alpn.clone();
        if cfg.protocol != UpstreamProtocol::Http1 {
            // Calls share connections: up to 100 streams each (the floor RFC 9113 §6.5.2
            // recommends servers allow; a server announcing fewer is obeyed). Pingora's
            // default is one stream per connection, a connection per concurrent call.
            template.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
        if let Some(t) = &cfg.tls {
            template.options.verify_cert = t.verify;
            template.options.verify_hostname = t.verify;
            if let Some(path) = &t.ca_file {
                template.options.ca = Some(Arc::new(load_ca(path)?));
            }
        }
        if let Some(hc) = &cfg.health_check {
            match &hc.kind {
                HealthCheckKind::Tcp => {
                    let mut check = if tls {
                        TcpHealthCheck::new_tls(&sni)
                    } else {
                        TcpHealthCheck::new()
                    };
                    check.peer_template.options.connection_timeout = Some(hc.timeout);
                    check.peer_template.options.verify_cert = template.options.verify_cert;
                    check.peer_template.options.verify_hostname = template.options.verify_hostname;
                    check.peer_template.options.ca = template.options.ca.clone();
                    check.consecutive_failure = hc.unhealthy_after;
                    check.consecutive_success = hc.healthy_after;
                    lb.set_health_check(check);
                }
                HealthCheckKind::Http { path } => {
                    let host = cfg
                        .servers
                        .first()
                        .map(|s| s.authority.clone())
                        .unwrap_or_default();
                    let mut check = HttpHealthCheck::new(&host, tls);
                    let mut req = RequestHeader::build("GET", path.as_bytes(), None)
                        .map_err(PoolError::HealthCheck)?;
                    req.insert_header("Host", host.as_str())
                        .map_err(PoolError::HealthCheck)?;
                    req.insert_header("User-Agent", "tollgate-health-check")
                        .map_err(PoolError::HealthCheck)?;
                    check.req = req;
                    check.peer_template.options.connection_timeout = Some(hc.timeout);
                    check.peer_template.options.read_timeout = Some(hc.timeout);
                    // The check speaks what requests speak.
                    check.peer_template.options.alpn = alpn.clone();
                    if let Some(t) = &cfg.tls {
                        check.peer_template.sni = t.sni.clone();
                        check.peer_template.options.verify_cert = t.verify;
                        check.peer_template.options.verify_hostname = t.verify;
                        check.peer_template.options.ca = template.options.ca.clone();
                    }
                    check.consecutive_failure = hc.unhealthy_after;
                    check.consecutive_success = hc.healthy_after;
                    lb.set_health_check(Box::new(check));
                }
            }
            lb.health_check_frequency = Some(hc.interval);
            lb.parallel_health_check = true;
        }
        let servers = cfg
            .servers
            .iter()
            .map(|s| {
                let mut peer = template.clone();
                peer._address = pingora::protocols::l4::socket::SocketAddr::Inet(s.addr);
                let authority =
                    HeaderValue::from_str(&s.authority).map_err(|source| PoolError::Authority {
                        authority: s.authority.clone(),
                        source,
                    })?;
                Ok(Server {
                    addr: s.addr,
                    peer,
                    authority,
                })
            })
            .collect::<Result<Box<[_]>, PoolError>>()?;
        let host_header = match &cfg.host_header {
            HostHeader::Pass => HostRewrite::Pass,
            HostHeader::Upstream => HostRewrite::Upstream,
            HostHeader::Set(v) => HostRewrite::Set(HeaderValue::from_str(v).map_err(|source| {
                PoolError::HostHeader {
                    value: v.clone(),
                    source,
                }
            })?),
        };
        Ok(Self {
            lb: Arc::new(lb),
            servers,
            next: AtomicUsize::new(0),
            host_header,
            size: addrs.len(),
            retries: cfg.retries,
            health_checked: cfg.health_check.is_some(),
        })
    }

    /// The next server, round robin; with health checks, the next healthy one.
    pub fn select(&self) -> Option<&Server> {
        if !self.health_checked {
            // Every server counts as up: no load balancer, hash or lookup needed.
            return match &*self.servers {
                [one] => Some(one),
                all => all.get(
                    self.next
                        .fetch_add(1, Ordering::Relaxed)
                        .checked_rem(all.len())?,
                ),
            };
        }
        let backend: Backend = self.lb.select(b"", 256)?;
        let addr = *backend.addr.as_inet()?;
        self.servers.iter().find(|s| s.addr == addr)
    }

    /// The next server other than `tried` (a retry after it failed), when another is up;
    /// else whatever `select` gives.
    pub fn select_other(&self, tried: Option<SocketAddr>) -> Option<&Server> {
        let mut pick = self.select();
        for _ in 1..self.servers.len() {
            match pick {
                Some(s) if Some(s.addr) == tried => pick = self.select(),
                _ => break,
            }
        }
        pick
    }

    /// The load balancer, when it has health checks to run.
    pub fn health_checked_lb(&self) -> Option<Arc<LoadBalancer<RoundRobin>>> {
        self.health_checked.then(|| self.lb.clone())
    }

    /// The configured `host:port` of a server.
    pub fn authority(&self, addr: &SocketAddr) -> Option<&HeaderValue> {
        self.servers
            .iter()
            .find(|s| s.addr == *addr)
            .map(|s| &s.authority)
    }
}

/// The CA certificates in a PEM file.
fn load_ca(path: &Path) -> Result<Box<[pingora::tls::x509::X509]>, PoolError> {
    let pem = std::fs::read(path).map_err(|source| PoolError::ReadCa {
        path: path.to_path_buf(),
        source,
    })?;
    let certs =
        pingora::tls::x509::X509::stack_from_pem(&pem).map_err(|source| PoolError::BadCa {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(PoolError::EmptyCa {
            path: path.to_path_buf(),
        });
    }
    Ok(certs.into_boxed_slice())
}
