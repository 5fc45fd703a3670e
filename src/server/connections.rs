//! What every client connection goes through before HTTP: the listener's connection cap
//! (`listen[].max_connections`) and, for HTTP/1, the slow-client deadlines of
//! [`crate::proxy::slow_clients`].
//!
//! [`Guarded`] wraps the proxy's Pingora app: it counts the connection against its
//! listener (one over the cap is closed at once and counted), wraps an HTTP/1 stream in a
//! [`GuardedStream`], and serves the connection's keep-alive requests itself, so the slot
//! is given back when the connection ends. The TLS handshake happens before (Pingora
//! bounds it at 60 s).

use crate::config::{Listener, SlowClientLimits};
use crate::proxy::slow_clients::{GuardedStream, TimeoutCounters};
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{ALPN, Stream};
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One listener's connection count and cap.
struct Slots {
    addr: SocketAddr,
    h2c: bool,
    cap: usize,
    open: AtomicUsize,
    gauge: IntGauge,
    refused: IntCounter,
}

/// A counted connection; the slot is given back on drop.
struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.gauge.dec();
    }
}

impl Slots {
    fn take(&self) -> Option<Slot<'_>> {
        let taken = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.cap).then_some(n + 1)
            });
        if taken.is_err() {
            self.refused.inc();
            return None;
        }
        self.gauge.inc();
        Some(Slot(self))
    }
}

/// The connection metrics, registered once.
pub struct ConnectionMetrics {
    open: IntGaugeVec,
    refused: IntCounterVec,
    timeouts: Arc<TimeoutCounters>,
}

impl ConnectionMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let open = IntGaugeVec::new(
            Opts::new(
                "tollgate_connections",
                "Client connections open, by listener.",
            ),
            &["listener"],
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "tollgate_connections_refused_total",
                "Client connections closed at once because their listener was at \
                 listen[].max_connections, by listener.",
            ),
            &["listener"],
        )?;
        let timeouts = IntCounterVec::new(
            Opts::new(
                "tollgate_client_timeouts_total",
                "Client connections closed because the request header or body came too \
                 slowly (server.client_header_timeout, server.client_body_timeout), by phase.",
            ),
            &["phase"],
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(timeouts.clone()))?;
        let timeouts = Arc::new(TimeoutCounters {
            header: timeouts.with_label_values(&["header"]),
            body: timeouts.with_label_values(&["body"]),
        });
        Ok(Self {
            open,
            refused,
            timeouts,
        })
    }
}

/// The proxy app behind the connection cap and the slow-client deadlines.
pub struct Guarded<A> {
    inner: Arc<A>,
    listeners: Vec<Slots>,
    limits: SlowClientLimits,
    timeouts: Arc<TimeoutCounters>,
}

impl<A> Guarded<A> {
    pub fn new(
        inner: A,
        listeners: &[Listener],
        limits: SlowClientLimits,
        metrics: &ConnectionMetrics,
    ) -> Self {
        let listeners = listeners
            .iter()
            .map(|l| {
                let label = l.addr.to_string();
                Slots {
                    addr: l.addr,
                    h2c: l.h2c,
                    cap: l.max_connections,
                    open: AtomicUsize::new(0),
                    gauge: metrics.open.with_label_values(&[&label]),
                    refused: metrics.refused.with_label_values(&[&label]),
                }
            })
            .collect();
        Self {
            inner: Arc::new(inner),
            listeners,
            limits,
            timeouts: metrics.timeouts.clone(),
        }
    }

    /// The listener a connection came in on, by the address it reached (a wildcard
    /// listener matches by port).
    fn listener_of(&self, stream: &Stream) -> Option<&Slots> {
        let local = *stream.get_socket_digest()?.local_addr()?.as_inet()?;
        self.listeners.iter().find(|l| l.addr == local).or_else(|| {
            self.listeners
                .iter()
                .find(|l| l.addr.port() == local.port() && l.addr.ip().is_unspecified())
        })
    }

    /// Whether the connection speaks HTTP/2: agreed by ALPN, or (on an h2c listener) it
    /// opens with the preface, peeked for at most the header deadline. `None`: nothing
    /// came in time.
    async fn is_http2(&self, stream: &mut Stream, h2c: bool) -> Option<bool> {
        if stream.get_ssl_digest().is_some() {
            return Some(matches!(stream.selected_alpn_proto(), Some(ALPN::H2)));
        }
        if !h2c {
            return Some(false);
        }
        let mut buf = [0u8; H2_PREFACE.len()];
        match tokio::time::timeout(self.limits.header, stream.try_peek(&mut buf)).await {
            // A short first segment still starts with "PRI", which no HTTP/1 client sends.
            Ok(Ok(true)) => Some(buf.starts_with(b"PRI")),
            Ok(Ok(false)) => Some(false),
            Ok(Err(_)) => None,
            Err(_) => {
                self.timeouts.header.inc();
                None
            }
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let listener = self.listener_of(&stream);
        let _slot = match listener {
            Some(l) => Some(l.take()?),
            None => None,
        };
        let h2c = listener.is_some_and(|l| l.h2c);
        let http2 = self.is_http2(&mut stream, h2c).await?;
        let mut next = Some(if http2 {
            stream
        } else {
            Box::new(GuardedStream::new(
                stream,
                self.limits,
                self.timeouts.clone(),
            ))
        });
        // Keep-alive requests are served here rather than handed back to Pingora's loop,
        // so the slot is held exactly as long as the connection.
        while let Some(s) = next {
            next = self.inner.process_new(s, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
