//! Upstream pools: round robin over an API's servers (pingora-load-balancing), their
//! active health checks (run by the catalog's reloader), and the `HttpPeer` each request
//! connects to.

use crate::config::{HealthCheckKind, HostHeader, UpstreamConfig};
use pingora::http::RequestHeader;
use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::Arc;

/// One API's servers and how to reach them.
pub struct Pool {
    lb: Arc<LoadBalancer<RoundRobin>>,
    /// Peer settings shared by every server; the address is filled in per request.
    template: HttpPeer,
    /// `host:port` as configured, by address, for `host_header: upstream`.
    authorities: Vec<(SocketAddr, Box<str>)>,
    pub host_header: HostHeader,
    pub size: usize,
    health_checked: bool,
}

/// The server a request was sent to.
pub struct Selected {
    pub peer: Box<HttpPeer>,
    pub addr: SocketAddr,
}

impl Pool {
    /// `id` keeps this pool's idle connections apart from every other pool's: Pingora's
    /// reuse key covers address, SNI and verification flags but not the trusted CAs, so
    /// two APIs sharing a server must not share connections.
    pub fn new(cfg: &UpstreamConfig, id: u64) -> Result<Self, String> {
        let addrs: Vec<SocketAddr> = cfg.servers.iter().map(|s| s.addr).collect();
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(addrs.iter().copied())
            .map_err(|e| format!("cannot build the upstream pool: {e}"))?;
        let (tls, sni) = match &cfg.tls {
            Some(t) => (true, t.sni.clone()),
            None => (false, String::new()),
        };
        let first = addrs
            .first()
            .copied()
            .ok_or("an upstream pool needs a server")?;
        let mut template = HttpPeer::new(first, tls, sni.clone());
        template.group_key = id;
        template.options.connection_timeout = Some(cfg.connect_timeout);
        template.options.read_timeout = Some(cfg.read_timeout);
        template.options.write_timeout = Some(cfg.write_timeout);
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
                        .map_err(|e| format!("bad health-check path: {e}"))?;
                    req.insert_header("Host", host.as_str())
                        .map_err(|e| format!("bad health-check host: {e}"))?;
                    req.insert_header("User-Agent", "tollgate-health-check")
                        .map_err(|e| format!("bad health-check header: {e}"))?;
                    check.req = req;
                    check.peer_template.options.connection_timeout = Some(hc.timeout);
                    check.peer_template.options.read_timeout = Some(hc.timeout);
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
        Ok(Self {
            lb: Arc::new(lb),
            template,
            authorities: cfg
                .servers
                .iter()
                .map(|s| (s.addr, s.authority.as_str().into()))
                .collect(),
            host_header: cfg.host_header.clone(),
            size: addrs.len(),
            health_checked: cfg.health_check.is_some(),
        })
    }

    /// The next healthy server, round robin.
    pub fn select(&self) -> Option<Selected> {
        let backend: Backend = self.lb.select(b"", 256)?;
        let addr = *backend.addr.as_inet()?;
        let mut peer = Box::new(self.template.clone());
        peer._address = pingora::protocols::l4::socket::SocketAddr::Inet(addr);
        Some(Selected { peer, addr })
    }

    /// The load balancer, when it has health checks to run.
    pub fn health_checked_lb(&self) -> Option<Arc<LoadBalancer<RoundRobin>>> {
        self.health_checked.then(|| self.lb.clone())
    }

    /// The configured `host:port` of a server.
    pub fn authority(&self, addr: &SocketAddr) -> Option<&str> {
        self.authorities
            .iter()
            .find(|(a, _)| a == addr)
            .map(|(_, h)| &**h)
    }
}

/// The CA certificates in a PEM file.
fn load_ca(path: &std::path::Path) -> Result<Box<[pingora::tls::x509::X509]>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = pingora::tls::x509::X509::stack_from_pem(&pem)
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs.into_boxed_slice())
}
