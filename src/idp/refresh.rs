//! The refresh loop of one issuer and how requests talk to it: fetch at start and again
//! when the key set's lifetime ends, retry failures with a capped backoff (the old keys
//! stay in use), and fetch early when a `kid` miss asks, at most once per cooldown.
//!
//! Requests and the loop may run on different tokio runtimes (Pingora gives background
//! services their own), so they meet only through runtime-agnostic parts: a [`Notify`]
//! wakes the loop, a `watch` of the fetch generation wakes the requests that wait, and the
//! keys themselves are swapped in with `ArcSwap`.

use super::fetch::FetchError;
use super::jwks::{KeySet, NotAKeySet};
use super::{ExternalIssuer, lifetime};
use pingora::server::ShutdownWatch;
use reqwest::Url;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

/// Why a refresh brought no keys.
#[derive(Debug, thiserror::Error)]
pub(super) enum KeysError {
    #[error(transparent)]
    Fetch(Box<FetchError>),
    #[error("GET {from}: no answer within {after:?}")]
    TimedOut { from: String, after: Duration },
    #[error("{url}: {source}")]
    NotAKeySet { url: Url, source: NotAKeySet },
    #[error("{url}: no usable key in the set ({skipped} skipped)")]
    NoUsableKey { url: Url, skipped: usize },
}

impl From<FetchError> for KeysError {
    fn from(e: FetchError) -> Self {
        KeysError::Fetch(Box::new(e))
    }
}

/// Counters of one issuer's key fetches, for metrics.
#[derive(Debug, Default)]
pub struct IssuerStats {
    fetches_ok: AtomicU64,
    fetches_failed: AtomicU64,
    kid_miss_refetches: AtomicU64,
    kid_miss_joined: AtomicU64,
    refetches_suppressed: AtomicU64,
    keys: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Key sets fetched and installed.
    pub fetches_ok: u64,
    /// Fetches that failed (the previous keys, if any, stayed in use).
    pub fetches_failed: u64,
    /// Refetches a `kid` miss asked for.
    pub kid_miss_refetches: u64,
    /// `kid` misses that waited on a fetch already asked for or running.
    pub kid_miss_joined: u64,
    /// `kid` misses refused at once because the last fetch was too recent.
    pub refetches_suppressed: u64,
    /// Usable keys in the current set.
    pub keys: u64,
}

impl IssuerStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            fetches_ok: get(&self.fetches_ok),
            fetches_failed: get(&self.fetches_failed),
            kid_miss_refetches: get(&self.kid_miss_refetches),
            kid_miss_joined: get(&self.kid_miss_joined),
            refetches_suppressed: get(&self.refetches_suppressed),
            keys: get(&self.keys),
        }
    }

    pub(super) fn count_kid_miss_refetch(&self) {
        self.kid_miss_refetches.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_joined(&self) {
        self.kid_miss_joined.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_suppressed(&self) {
        self.refetches_suppressed.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a request that missed does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MissDecision {
    /// It asked the loop for a refetch and waits for it.
    Requested,
    /// A refetch is already asked for or running: it waits for that one.
    Joined,
    /// The last fetch started less than the cooldown ago: refuse now.
    Suppressed,
}

#[derive(Debug, Default)]
struct FetchState {
    /// When the last fetch started, or a miss last asked for one.
    last_start: Option<Instant>,
    in_flight: bool,
    /// A miss asked for a fetch the loop has not started yet.
    requested_at: Option<Instant>,
}

/// Where requests and the refresh loop meet. Its lock is held for a few instructions,
/// never across an `.await`, and only on a miss: a known `kid` never touches it.
pub(super) struct Coordinator {
    wake: Notify,
    generation: watch::Sender<u64>,
    state: Mutex<FetchState>,
}

impl Coordinator {
    pub(super) fn new() -> Self {
        Self {
            wake: Notify::new(),
            generation: watch::Sender::new(0),
            state: Mutex::new(FetchState::default()),
        }
    }

    /// A receiver that sees the next fetch complete.
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FetchState> {
        // The state is a few plain fields, consistent after any panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decide what a miss does. A request the loop has not taken up within
    /// `fetch_timeout` (a loop not running) counts as a fetch that started then.
    pub(super) fn on_miss(&self, cooldown: Duration, fetch_timeout: Duration) -> MissDecision {
        let now = Instant::now();
        let mut st = self.state();
        let pending = st
            .requested_at
            .is_some_and(|at| now.duration_since(at) < fetch_timeout);
        if st.in_flight || pending {
            return MissDecision::Joined;
        }
        if st
            .last_start
            .is_some_and(|at| now.duration_since(at) < cooldown)
        {
            return MissDecision::Suppressed;
        }
        st.last_start = Some(now);
        st.requested_at = Some(now);
        MissDecision::Requested
    }

    pub(super) fn wake_loop(&self) {
        self.wake.notify_one();
    }

    pub(super) fn cooldown_remaining(&self, cooldown: Duration) -> Duration {
        let st = self.state();
        match st.last_start {
            _ if st.in_flight => cooldown,
            Some(at) => cooldown.saturating_sub(at.elapsed()),
            None => Duration::ZERO,
        }
    }

    pub(super) fn fetch_started(&self) {
        let mut st = self.state();
        st.last_start = Some(Instant::now());
        st.in_flight = true;
        st.requested_at = None;
    }

    pub(super) fn fetch_finished(&self) {
        self.state().in_flight = false;
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }
}

/// Where one failure streak stands.
struct Streak {
    failures: u32,
    retry: Duration,
}

impl ExternalIssuer {
    /// Keep this issuer's key set fresh until `shutdown` changes.
    pub async fn run(&self, mut shutdown: ShutdownWatch) {
        let initial = self.settings.refresh.retry_initial;
        let mut streak = Streak {
            failures: 0,
            retry: initial,
        };
        loop {
            if *shutdown.borrow() {
                return;
            }
            self.refresh.fetch_started();
            let fetched = tokio::select! {
                r = tokio::time::timeout(self.settings.refresh.fetch_timeout, self.fetch_keys()) => {
                    r.unwrap_or_else(|_| Err(KeysError::TimedOut {
                        from: self.fetcher.describe(),
                        after: self.settings.refresh.fetch_timeout,
                    }))
                }
                _ = shutdown.changed() => {
                    self.refresh.fetch_finished();
                    return;
                }
            };
            let next = match fetched {
                Ok((set, lifetime)) => {
                    self.install(set, &streak);
                    streak = Streak {
                        failures: 0,
                        retry: initial,
                    };
                    lifetime
                }
                Err(e) => self.failed(&e, &mut streak),
            };
            self.refresh.fetch_finished();
            tokio::select! {
                _ = tokio::time::sleep(next) => {}
                _ = self.refresh.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Fetch and parse the key set; a set with no usable key counts as a failure, so a
    /// broken answer never replaces working keys.
    async fn fetch_keys(&self) -> Result<(KeySet, Duration), KeysError> {
        let fetched = self.fetcher.fetch().await?;
        let parsed = KeySet::parse(&fetched.body, &self.settings.algorithms).map_err(|source| {
            KeysError::NotAKeySet {
                url: fetched.url.clone(),
                source,
            }
        })?;
        for why in &parsed.skipped {
            log::debug!("issuer {}: {}: skipped {why}", self.name, fetched.url);
        }
        if parsed.set.is_empty() {
            return Err(KeysError::NoUsableKey {
                url: fetched.url,
                skipped: parsed.skipped.len(),
            });
        }
        let lifetime = lifetime::lifetime(&fetched.headers, &self.settings.refresh);
        Ok((parsed.set, lifetime))
    }

    fn install(&self, set: KeySet, streak: &Streak) {
        let count = set.len();
        let first = self.keys.load().is_none();
        self.keys.store(Some(Arc::new(set)));
        self.stats.fetches_ok.fetch_add(1, Ordering::Relaxed);
        self.stats.keys.store(count as u64, Ordering::Relaxed);
        if first {
            log::info!(
                "issuer {}: {count} keys fetched from {}; its tokens are accepted",
                self.name,
                self.fetcher.describe()
            );
        } else if streak.failures > 0 {
            log::info!(
                "issuer {}: keys fetched again from {} after {} failures ({count} keys)",
                self.name,
                self.fetcher.describe(),
                streak.failures
            );
        } else {
            log::debug!("issuer {}: {count} keys refreshed", self.name);
        }
    }

    /// Count and log a failed fetch; the wait before the next try.
    fn failed(&self, error: &KeysError, streak: &mut Streak) -> Duration {
        self.stats.fetches_failed.fetch_add(1, Ordering::Relaxed);
        streak.failures += 1;
        if streak.failures == 1 {
            if self.keys.load().is_none() {
                log::warn!(
                    "issuer {}: cannot fetch its keys from {}: {error}; its tokens get 401 until keys arrive (retrying)",
                    self.name,
                    self.fetcher.describe()
                );
            } else {
                log::warn!(
                    "issuer {}: cannot refresh its keys from {}: {error}; the keys fetched before stay in use (retrying)",
                    self.name,
                    self.fetcher.describe()
                );
            }
        } else {
            log::debug!(
                "issuer {}: fetch failure {} in a row: {error}",
                self.name,
                streak.failures
            );
        }
        let wait = streak.retry;
        streak.retry = streak
            .retry
            .saturating_mul(2)
            .min(self.settings.refresh.retry_max);
        wait
    }
}
