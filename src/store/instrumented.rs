//! A store with its metrics and its up/down state: per-operation latency and errors, the
//! `tollgate_store_up` gauge, and one log line when the store goes away and one when it
//! comes back (not one per failed request, which under load would flood the log).

use super::{
    Consumed, Cursor, Digest, Ephemeral, Feed, KeySetDoc, Record, RecordFeed, RecordKind, Revoke,
    Rotation, Store, StoreError, TokenRecord, Written,
};
use crate::metrics::{StoreMetrics, StoreOp};
use async_trait::async_trait;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a store that stays down is mentioned again.
const REMIND_EVERY: Duration = Duration::from_secs(30);

struct Health {
    /// Since when the store has been failing, and how many calls failed since.
    down: Option<(Instant, u64)>,
    last_reminder: Option<Instant>,
}

pub struct Instrumented<S> {
    inner: S,
    metrics: StoreMetrics,
    health: Mutex<Health>,
}

impl<S: Store> Instrumented<S> {
    pub fn new(inner: S, metrics: StoreMetrics) -> Self {
        metrics.up.set(1);
        Self {
            inner,
            metrics,
            health: Mutex::new(Health {
                down: None,
                last_reminder: None,
            }),
        }
    }

    async fn observe<T>(
        &self,
        op: StoreOp,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let start = Instant::now();
        let result = call.await;
        // The feeds block on purpose while waiting for changes: their time says nothing.
        if !matches!(op, StoreOp::Feed | StoreOp::RecordFeed) {
            self.metrics
                .duration(op)
                .observe(start.elapsed().as_secs_f64());
        }
        match (&result, op) {
            // The record feed reads on a connection of its own, which breaks and comes back
            // apart from the one every other call uses: its errors are counted, but the
            // store's up/down state (and its one log line per outage) follows the others.
            (Err(_), StoreOp::RecordFeed) => self.metrics.errors(op).inc(),
            (Ok(_), StoreOp::RecordFeed) => {}
            (Ok(_), _) => self.succeeded(),
            (Err(e), _) => self.failed(op, e),
        }
        result
    }

    fn succeeded(&self) {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((since, failures)) = h.down.take() {
            self.metrics.up.set(1);
            log::info!(
                "store ({}) is back after {:.1}s ({failures} failed calls)",
                self.inner.backend(),
                since.elapsed().as_secs_f64()
            );
        }
    }

    fn failed(&self, op: StoreOp, e: &StoreError) {
        self.metrics.errors(op).inc();
        self.metrics.up.set(0);
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match &mut h.down {
            None => {
                h.down = Some((now, 1));
                h.last_reminder = Some(now);
                let backend = self.inner.backend();
                let hint = match backend {
                    "sqlite" => "check that the state directory is writable and not full",
                    _ => "check that Redis runs and is reachable at store.url",
                };
                log::error!(
                    "store ({backend}) unavailable: {e}; {hint}; stateful token endpoints answer 503 until it is back, JWT validation goes on"
                );
            }
            Some((since, failures)) => {
                *failures += 1;
                let (since, failures) = (*since, *failures);
                if h.last_reminder.is_none_or(|t| now - t >= REMIND_EVERY) {
                    h.last_reminder = Some(now);
                    log::error!(
                        "store ({}) still unavailable after {:.0}s ({failures} failed calls): {e}",
                        self.inner.backend(),
                        (now - since).as_secs_f64()
                    );
                }
            }
        }
    }
}

#[async_trait]
impl<S: Store> Store for Instrumented<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.observe(StoreOp::Ping, self.inner.ping()).await
    }

    async fn insert(&self, tokens: Vec<(Digest, TokenRecord)>) -> Result<(), StoreError> {
        self.observe(StoreOp::Insert, self.inner.insert(tokens))
            .await
    }

    async fn get(&self, digest: &Digest) -> Result<Option<TokenRecord>, StoreError> {
        self.observe(StoreOp::Get, self.inner.get(digest)).await
    }

    async fn rotate(
        &self,
        used: Digest,
        successors: Vec<(Digest, TokenRecord)>,
        now: i64,
        grace: i64,
        reuse_until: Option<i64>,
    ) -> Result<Rotation, StoreError> {
        self.observe(
            StoreOp::Rotate,
            self.inner.rotate(used, successors, now, grace, reuse_until),
        )
        .await
    }

    async fn revoke(&self, what: Revoke) -> Result<(), StoreError> {
        self.observe(StoreOp::Revoke, self.inner.revoke(what)).await
    }

    async fn revocations(
        &self,
        after: &Cursor,
        wait: Duration,
        now: i64,
    ) -> Result<Feed, StoreError> {
        self.observe(StoreOp::Feed, self.inner.revocations(after, wait, now))
            .await
    }

    async fn purge(&self, now: i64) -> Result<u64, StoreError> {
        self.observe(StoreOp::Purge, self.inner.purge(now)).await
    }

    async fn key_set(&self) -> Result<Option<KeySetDoc>, StoreError> {
        self.observe(StoreOp::KeySet, self.inner.key_set()).await
    }

    async fn replace_key_set(
        &self,
        expected: Option<u64>,
        doc: Vec<u8>,
    ) -> Result<bool, StoreError> {
        self.observe(StoreOp::KeySet, self.inner.replace_key_set(expected, doc))
            .await
    }

    async fn legacy_key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.observe(StoreOp::KeySet, self.inner.legacy_key(name))
            .await
    }

    async fn put_ephemeral(
        &self,
        kind: Ephemeral,
        key: Digest,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.observe(
            StoreOp::Ephemeral,
            self.inner.put_ephemeral(kind, key, value, expires_at),
        )
        .await
    }

    async fn claim_ephemeral(
        &self,
        kind: Ephemeral,
        key: Digest,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        self.observe(
            StoreOp::Ephemeral,
            self.inner.claim_ephemeral(kind, key, value, expires_at),
        )
        .await
    }

    async fn remember_once(
        &self,
        kind: Ephemeral,
        key: Digest,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        self.observe(
            StoreOp::Ephemeral,
            self.inner.remember_once(kind, key, expires_at),
        )
        .await
    }

    async fn get_ephemeral(
        &self,
        kind: Ephemeral,
        key: &Digest,
        now: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.observe(StoreOp::Ephemeral, self.inner.get_ephemeral(kind, key, now))
            .await
    }

    async fn consume_ephemeral(
        &self,
        kind: Ephemeral,
        key: &Digest,
        now: i64,
    ) -> Result<Consumed, StoreError> {
        self.observe(
            StoreOp::Ephemeral,
            self.inner.consume_ephemeral(kind, key, now),
        )
        .await
    }

    async fn delete_ephemeral(&self, kind: Ephemeral, key: &Digest) -> Result<(), StoreError> {
        self.observe(StoreOp::Ephemeral, self.inner.delete_ephemeral(kind, key))
            .await
    }

    async fn put_record(
        &self,
        kind: RecordKind,
        name: &str,
        expected: Option<u64>,
        doc: Vec<u8>,
    ) -> Result<Written, StoreError> {
        self.observe(
            StoreOp::Record,
            self.inner.put_record(kind, name, expected, doc),
        )
        .await
    }

    async fn delete_record(
        &self,
        kind: RecordKind,
        name: &str,
        expected: u64,
    ) -> Result<Written, StoreError> {
        self.observe(
            StoreOp::Record,
            self.inner.delete_record(kind, name, expected),
        )
        .await
    }

    async fn get_record(&self, kind: RecordKind, name: &str) -> Result<Option<Record>, StoreError> {
        self.observe(StoreOp::Record, self.inner.get_record(kind, name))
            .await
    }

    async fn records_after(
        &self,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<RecordFeed, StoreError> {
        self.observe(
            StoreOp::RecordFeed,
            self.inner.records_after(after, limit, wait),
        )
        .await
    }
}
