//! Deadlines for clients that send slowly: the whole request header, the request body at a
//! minimum rate, and the idle time between keep-alive requests.
//!
//! Pingora's own read timeout restarts with every read, so a client sending one header
//! byte a second (slowloris) would hold its connection for ever. Each HTTP/1 connection's
//! stream is wrapped in a [`GuardedStream`] which knows where the connection is in its
//! request cycle (told by the proxy through [`request_started`], [`body_done`] and
//! [`request_finished`]) and fails a read once that phase's deadline has passed:
//!
//! - header: the whole header within `server.client_header_timeout`, counted from accept
//!   for a connection's first request (as nginx counts `client_header_timeout`) and from
//!   the first byte for later ones;
//! - body: `server.client_body_timeout` from the end of the header, extended by one second
//!   for every `server.client_body_min_rate` bytes received (Apache mod_reqtimeout's
//!   `body=20,MinRate=500` rule), so a large upload on a good link is never cut and a
//!   trickle is;
//! - idle: a keep-alive connection waits at most `server.keepalive_timeout` for its next
//!   request (Pingora's HTTP/1.1 default is to wait for ever).
//!
//! While the response is produced and written nothing is timed here (Pingora reads the
//! client only to notice it leave). HTTP/2 connections are not wrapped: their streams are
//! bounded by the HTTP/2 layer.

use crate::auth::refusal::Refusal;
use crate::config::SlowClientLimits;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::prelude::Result;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::SslDigest;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use pingora::proxy::Session;
use prometheus::IntCounter;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Connections closed because a deadline passed, by phase.
#[derive(Debug, Clone)]
pub struct TimeoutCounters {
    pub header: IntCounter,
    pub body: IntCounter,
}

// Phases, as the proxy sets them.
/// Waiting for the first request of the connection (its deadline runs from accept).
const FIRST_HEADER: u8 = 0;
/// Between requests: idle until a byte comes, then the header deadline.
const NEXT_HEADER: u8 = 1;
const BODY: u8 = 2;
const RESPONSE: u8 = 3;

/// A client connection with the deadlines above.
pub struct GuardedStream {
    inner: Stream,
    limits: SlowClientLimits,
    counters: Arc<TimeoutCounters>,
    /// Written by the proxy (through `&self`), read on every poll: the phase in the low
    /// byte, above it a count of the proxy's changes, so that a change is seen even when
    /// the phase comes back to the one last seen (a keep-alive request whose body came
    /// with its header is read with no poll in between).
    phase: AtomicU64,
    /// The `phase` value `deadline` was set for.
    seen: u64,
    /// Its phase.
    timed_phase: u8,
    /// When the current phase's time runs out (`None`: not timed).
    deadline: Option<Instant>,
    /// Whether a byte of the next request has come (`NEXT_HEADER` only).
    header_started: bool,
    body_start: Instant,
    body_bytes: u64,
    /// Allocated the first time a read has to wait with a deadline set.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl GuardedStream {
    pub fn new(inner: Stream, limits: SlowClientLimits, counters: Arc<TimeoutCounters>) -> Self {
        let now = Instant::now();
        Self {
            inner,
            limits,
            counters,
            phase: AtomicU64::new(u64::from(FIRST_HEADER)),
            seen: u64::from(FIRST_HEADER),
            timed_phase: FIRST_HEADER,
            deadline: Some(now + limits.header),
            header_started: false,
            body_start: now,
            body_bytes: 0,
            sleep: None,
        }
    }

    /// The proxy's change of phase (it alone writes, from the connection's task).
    fn set(&self, phase: u8) {
        let count = (self.phase.load(Ordering::Relaxed) >> 8) + 1;
        self.phase
            .store((count << 8) | u64::from(phase), Ordering::Relaxed);
    }

    /// Take up the phase `state` the proxy set since the last read, with its deadline.
    fn enter_phase(&mut self, state: u64, now: Instant) {
        self.seen = state;
        let phase = (state & 0xff) as u8;
        self.timed_phase = phase;
        self.deadline = match phase {
            NEXT_HEADER => {
                self.header_started = false;
                Some(now + self.limits.keepalive)
            }
            BODY => {
                self.body_start = now;
                self.body_bytes = 0;
                Some(now + self.limits.body)
            }
            FIRST_HEADER => Some(now + self.limits.header),
            _ => None,
        };
    }

    /// Account for `n` bytes just read.
    fn on_bytes(&mut self, n: usize, now: Instant) {
        match self.timed_phase {
            NEXT_HEADER if !self.header_started && n > 0 => {
                self.header_started = true;
                self.deadline = Some(now + self.limits.header);
            }
            BODY if self.limits.body_min_rate > 0 => {
                self.body_bytes += n as u64;
                let earned = Duration::from_secs(self.body_bytes / self.limits.body_min_rate);
                self.deadline = Some(self.body_start + self.limits.body + earned);
            }
            _ => {}
        }
    }

    /// The deadline passed: count it (an idle keep-alive connection closing is no fault).
    fn expired(&self) -> io::Error {
        let what = match self.timed_phase {
            BODY => {
                self.counters.body.inc();
                "request body too slow"
            }
            NEXT_HEADER if !self.header_started => "keep-alive connection idle",
            _ => {
                self.counters.header.inc();
                "request header too slow"
            }
        };
        io::Error::new(io::ErrorKind::TimedOut, what)
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let state = this.phase.load(Ordering::Relaxed);
        if state == this.seen && this.deadline.is_none() {
            // Untimed (the response is being produced): no clock read, nothing to count.
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let now = Instant::now();
        if state != this.seen {
            this.enter_phase(state, now);
        }
        if let Some(deadline) = this.deadline
            && now >= deadline
        {
            return Poll::Ready(Err(this.expired()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                this.on_bytes(n, now);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let Some(deadline) = this.deadline else {
                    return Poll::Pending;
                };
                let sleep = match &mut this.sleep {
                    Some(s) => {
                        if s.deadline() != deadline {
                            s.as_mut().reset(deadline);
                        }
                        s
                    }
                    None => this
                        .sleep
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(this.expired())),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for GuardedStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for GuardedStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for GuardedStream {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for GuardedStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for GuardedStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for GuardedStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for GuardedStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

impl std::fmt::Debug for GuardedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStream")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

/// Read the whole request body, or say why not (too large, or cut by its deadline).
pub(crate) async fn read_body(
    session: &mut Session,
    limit: usize,
) -> Result<Result<Bytes, Refusal>> {
    let mut buf = BytesMut::new();
    loop {
        let chunk = match session.read_request_body().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(Ok(buf.freeze())),
            Err(e) if timed_out(&e) => return Ok(Err(Refusal::body_too_slow())),
            // The client went away: its failure, not the gateway's (no 500, no error log).
            Err(mut e) => {
                e.as_down();
                return Err(e);
            }
        };
        if buf.len() + chunk.len() > limit {
            return Ok(Err(Refusal::body_too_large()));
        }
        buf.extend_from_slice(&chunk);
    }
}

/// Whether a downstream read failed because a deadline here passed.
pub(crate) fn timed_out(e: &pingora::Error) -> bool {
    e.root_cause()
        .downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
}

fn guard(session: &Session) -> Option<&GuardedStream> {
    session
        .as_downstream()
        .stream()?
        .as_any()
        .downcast_ref::<GuardedStream>()
}

/// The request header has been read: time the body, if one is coming.
pub(crate) fn request_started(session: &mut Session) {
    let body = !session.as_downstream_mut().is_body_empty();
    if let Some(g) = guard(session) {
        g.set(if body { BODY } else { RESPONSE });
    }
}

/// The request body has been read to its end.
pub(crate) fn body_done(session: &Session) {
    if let Some(g) = guard(session) {
        g.set(RESPONSE);
    }
}

/// The exchange is over: the connection waits for its next request.
pub(crate) fn request_finished(session: &Session) {
    if let Some(g) = guard(session) {
        g.set(NEXT_HEADER);
    }
}
