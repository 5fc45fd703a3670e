//! Graceful upgrades that cannot take the site down, on top of Pingora's socket transfer.
//!
//! The old process, on `SIGQUIT`, hands its listening sockets to the new process waiting on
//! the upgrade socket, then waits until the new process reports serving (it writes its pid
//! into the pid file once every listener is up). Only then does the old one drain: for
//! `server.drain_time` it goes on answering, each answer with `Connection: close`, then it
//! stops accepting and finishes its in-flight requests. When no
//! new process takes the sockets, or it does not report serving in time, the old process
//! says so in its log and goes on serving as if nothing had happened: a new process that
//! fails at start (bad config, unwritable state, a port taken) changes nothing.
//!
//! [`Ready`] is the new (or any) process's side: it writes the pid file once this process
//! listens on every configured address, or exits when it cannot.

use super::listening::{Fd, listeners_of, running_pid};
use crate::proxy::begin_draining;
use async_trait::async_trait;
use pingora::server::{Fds, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Why a graceful upgrade did not happen.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("cannot list this process's listening sockets: {0}")]
    Listeners(std::io::Error),
    #[error("this process holds none of its configured listening sockets")]
    NoListeners,
    #[error("no new process took the listening sockets on {sock} within {waited:?}")]
    NoTaker { sock: String, waited: Duration },
    #[error(
        "the new process took the listening sockets but did not report serving (pid file {}) within {waited:?}",
        pid_file.display()
    )]
    NotServing { pid_file: PathBuf, waited: Duration },
}

/// The old process's side: the shutdown signals Pingora acts on, with `SIGQUIT` turned into
/// a drain only once a new process serves.
pub struct Handover {
    /// Each listening address, and the name Pingora's listeners know it by.
    pub listeners: Vec<(SocketAddr, String)>,
    pub upgrade_sock: PathBuf,
    pub pid_file: PathBuf,
    /// How long to wait for a new process to take the sockets and report serving.
    pub timeout: Duration,
    /// How long to go on accepting, answering with `Connection: close`, before stopping.
    pub drain_time: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for Handover {
    async fn recv(&self) -> ShutdownSignal {
        let (quit, term, int) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (quit, term, int) else {
            log::error!("cannot watch for shutdown signals: stopping");
            return ShutdownSignal::GracefulTerminate;
        };
        loop {
            tokio::select! {
                _ = quit.recv() => match self.hand_over().await {
                    Ok(pid) => {
                        log::info!(
                            "graceful upgrade: process {pid} serves on the listening sockets; \
                             draining this one"
                        );
                        return self.drain(&mut int).await;
                    }
                    Err(e) => log::error!(
                        "graceful upgrade failed: {e}; this process keeps serving"
                    ),
                },
                _ = term.recv() => {
                    log::info!("SIGTERM: draining");
                    return self.drain(&mut int).await;
                }
                _ = int.recv() => {
                    log::info!("SIGINT: stopping now");
                    return ShutdownSignal::FastShutdown;
                }
            }
        }
    }
}

impl Handover {
    /// Answer with `Connection: close` for the drain time, so that clients leave their
    /// keep-alive connections while this process still reads them; then Pingora stops
    /// accepting, closes the idle connections and lets in-flight requests finish. `SIGINT`
    /// still stops at once.
    async fn drain(&self, int: &mut Signal) -> ShutdownSignal {
        begin_draining();
        tokio::select! {
            _ = tokio::time::sleep(self.drain_time) => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => {
                log::info!("SIGINT: stopping now");
                ShutdownSignal::FastShutdown
            }
        }
    }

    /// Send the listening sockets to the new process and wait until it serves; its pid.
    async fn hand_over(&self) -> Result<u32, HandoverError> {
        log::info!(
            "SIGQUIT: handing the listening sockets to a new process on {}",
            self.upgrade_sock.display()
        );
        let own = listeners_of("self").map_err(HandoverError::Listeners)?;
        let mut fds = Fds::new();
        for (addr, key) in &self.listeners {
            if let Some((_, fd)) = own.iter().find(|(a, _)| a == addr) {
                fds.add(key.clone(), *fd as Fd);
            }
        }
        if fds.is_empty() {
            return Err(HandoverError::NoListeners);
        }
        let started = Instant::now();
        let deadline = started + self.timeout;
        let fds = Arc::new(fds);
        let sock = self.upgrade_sock.to_string_lossy().into_owned();
        // Each attempt waits a few seconds for the new process's socket (Pingora retries).
        loop {
            let (f, s) = (fds.clone(), sock.clone());
            let sent = tokio::task::spawn_blocking(move || f.send_to_sock(s.as_str())).await;
            if matches!(sent, Ok(Ok(_))) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(HandoverError::NoTaker {
                    sock,
                    waited: started.elapsed(),
                });
            }
        }
        let me = std::process::id();
        loop {
            if let Some(pid) = running_pid(&self.pid_file).filter(|p| *p != me) {
                return Ok(pid);
            }
            if Instant::now() >= deadline {
                return Err(HandoverError::NotServing {
                    pid_file: self.pid_file.clone(),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reports this process serving: once it listens on every configured address, its pid goes
/// into the pid file (which the old process of an upgrade, and `tollgate -d`, wait for). A
/// process that cannot listen on all of them in time exits: serving some would be worse.
/// One that cannot write the pid file serves on and says so.
pub struct Ready {
    pub addrs: Vec<SocketAddr>,
    pub pid_file: PathBuf,
    pub timeout: Duration,
}

#[async_trait]
impl BackgroundService for Ready {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let deadline = Instant::now() + self.timeout;
        loop {
            let own: Vec<SocketAddr> = listeners_of("self")
                .map(|l| l.into_iter().map(|(a, _)| a).collect())
                .unwrap_or_default();
            let missing: Vec<String> = self
                .addrs
                .iter()
                .filter(|a| !own.contains(a))
                .map(ToString::to_string)
                .collect();
            if missing.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                log::error!(
                    "not listening on {} after {:?}: exiting",
                    missing.join(", "),
                    self.timeout
                );
                std::process::exit(1);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid = std::process::id();
        match write_pid_file(&self.pid_file, pid) {
            Ok(()) => log::info!("serving (pid {pid})"),
            // Serving matters more than the file: the process goes on, and says what the
            // file's readers (an upgrade, `tollgate -d`) will miss.
            Err(e) => log::error!(
                "serving (pid {pid}), but cannot write the pid file {}: {e}; a graceful \
                 upgrade or `tollgate -d` waiting for it will give up",
                self.pid_file.display()
            ),
        }
    }
}

/// Replace the pid file in one step (written aside, then renamed over it): a reader never
/// sees it empty or half written.
pub fn write_pid_file(path: &Path, pid: u32) -> std::io::Result<()> {
    let aside = path.with_extension(format!("pid.{pid}"));
    std::fs::write(&aside, format!("{pid}\n"))?;
    std::fs::rename(&aside, path)
}
