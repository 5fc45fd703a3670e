//! The cluster store: Redis (or Valkey) shared by every gateway. Tokens are stored only as
//! digests, each key expires with what it holds (no purge job), multi-key changes run as
//! Lua scripts (`scripts`), and revocations go to a sorted set (the live set) and a
//! stream that every node follows with a blocking read.
//!
//! Every command runs on a small runtime of the store's own, through redis-rs's
//! `ConnectionManager` (one multiplexed connection, re-established by itself when Redis
//! comes back). The streams are read on connections of their own (one for revocations, one
//! for provisioned records, `records`), since a blocking read would hold up the commands
//! queued behind it. Every call has a timeout, so a Redis that hangs (SIGSTOP, a full
//! network buffer) gives errors, not stuck requests.

mod feed;
mod records;
mod scripts;
mod wire;

use super::{
    Consumed, Cursor, Digest, Ephemeral, Feed, KeySetDoc, Record, RecordFeed, RecordKind, Revoke,
    Rotation, Store, StoreError, TokenRecord, Written,
};
use crate::config::RedisSettings;
use crate::domain::ids::GrantId;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, Client};
use async_trait::async_trait;
use scripts::Scripts;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wire::hex;

fn redis_error(op: &'static str) -> impl FnOnce(::redis::RedisError) -> StoreError {
    move |e| StoreError::Redis {
        op,
        source: Arc::new(e),
    }
}

/// Connections and the runtime of one process (a daemon forks after startup, and neither
/// threads nor connections survive a fork).
struct Live {
    pid: u32,
    /// Kept for its threads; commands are spawned on `handle`.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    manager: ConnectionManager,
    /// The revocation stream's connection.
    feed: Dedicated,
    /// The connection that waits for provisioned records.
    records: Dedicated,
}

/// A connection for blocking reads: `None` until first use and after an error.
type Dedicated = Arc<tokio::sync::Mutex<Option<MultiplexedConnection>>>;

impl Drop for Live {
    fn drop(&mut self) {
        // Dropped from async code (a test, a command-line tool): shutting down without
        // waiting for the worker is the only way that does not block a runtime thread.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

pub struct RedisStore {
    client: Client,
    settings: RedisSettings,
    scripts: Arc<Scripts>,
    live: Mutex<Option<Arc<Live>>>,
    /// The record sequence's epoch this process read last (records::read_after).
    record_epoch: Mutex<String>,
}

impl RedisStore {
    /// Check the settings; connect on first use.
    pub fn open(settings: &RedisSettings) -> Result<Self, StoreError> {
        let client = Client::open(settings.url.expose().as_str())
            .map_err(|e| StoreError::RedisUrl(Arc::new(e)))?;
        Ok(Self {
            client,
            settings: settings.clone(),
            scripts: Arc::new(Scripts::new()),
            live: Mutex::new(None),
            record_epoch: Mutex::new(String::new()),
        })
    }

    fn record_epoch(&self) -> String {
        self.record_epoch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_record_epoch(&self, epoch: String) {
        *self.record_epoch.lock().unwrap_or_else(|p| p.into_inner()) = epoch;
    }

    fn live(&self) -> Result<Arc<Live>, StoreError> {
        let pid = std::process::id();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = live.as_ref() {
            if l.pid == pid {
                return Ok(l.clone());
            }
            // Inherited from the parent of a fork: its threads are gone. Never drop it here.
            if let Some(old) = live.take() {
                std::mem::forget(old);
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tollgate-redis")
            .enable_all()
            .build()
            .map_err(|e| StoreError::RedisRuntime(Arc::new(e)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.settings.timeout))
            .set_response_timeout(Some(self.settings.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let manager = {
            let _in_runtime = runtime.enter();
            ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                .map_err(redis_error("connect"))?
        };
        let l = Arc::new(Live {
            pid,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            manager,
            feed: Arc::new(tokio::sync::Mutex::new(None)),
            records: Arc::new(tokio::sync::Mutex::new(None)),
        });
        *live = Some(l.clone());
        Ok(l)
    }

    /// Run `f` on the store's runtime with the shared connection, within the timeout.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager, Arc<Scripts>, String) -> Fut + Send + 'static,
        Fut: Future<Output = ::redis::RedisResult<T>> + Send + 'static,
    {
        let live = self.live()?;
        let timeout = self.settings.timeout;
        let fut = f(
            live.manager.clone(),
            self.scripts.clone(),
            self.settings.prefix.clone(),
        );
        let task = live
            .handle
            .spawn(async move { tokio::time::timeout(timeout, fut).await });
        match task.await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(redis_error(op)(e)),
            Ok(Err(_)) => Err(StoreError::RedisTimeout { op, after: timeout }),
            Err(e) => Err(StoreError::RedisTask {
                op,
                source: Arc::new(e),
            }),
        }
    }

    /// Run `f` on the store's runtime with the connection of `slot` (opened if needed;
    /// `fresh`: just opened), within `wait` plus twice the timeout. One caller at a time.
    async fn run_dedicated<T, F, Fut>(
        &self,
        op: &'static str,
        slot: fn(&Live) -> &Dedicated,
        wait: Duration,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(MultiplexedConnection, bool, Arc<Scripts>, String) -> Fut + Send + 'static,
        Fut: Future<Output = ::redis::RedisResult<T>> + Send + 'static,
    {
        let live = self.live()?;
        let slot = Arc::clone(slot(&live));
        let client = self.client.clone();
        let timeout = self.settings.timeout;
        let (scripts, prefix) = (self.scripts.clone(), self.settings.prefix.clone());
        let task = live.handle.spawn(async move {
            let mut slot = slot.lock().await;
            let fresh = slot.is_none();
            if fresh {
                // No response timeout of the connection's own: its first read may be a
                // catch-up that does not wait and the next a blocking one; every read is
                // bounded below by its own wait.
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(None);
                let conn = tokio::time::timeout(
                    timeout * 2,
                    client.get_multiplexed_async_connection_with_config(&config),
                )
                .await
                .map_err(|_| StoreError::RedisTimeout {
                    op,
                    after: timeout * 2,
                })?
                .map_err(redis_error(op))?;
                *slot = Some(conn);
            }
            let Some(conn) = slot.as_ref().cloned() else {
                return Err(StoreError::RedisReply {
                    op,
                    what: "no connection",
                });
            };
            let bound = wait + timeout * 2;
            match tokio::time::timeout(bound, f(conn, fresh, scripts, prefix)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => {
                    *slot = None;
                    Err(redis_error(op)(e))
                }
                Err(_) => {
                    *slot = None;
                    Err(StoreError::RedisTimeout { op, after: bound })
                }
            }
        });
        task.await.map_err(|e| StoreError::RedisTask {
            op,
            source: Arc::new(e),
        })?
    }
}

#[async_trait]
impl Store for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run("PING", |mut c, _, _| async move {
            ::redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        .map(drop)
    }

    async fn insert(&self, tokens: Vec<(Digest, TokenRecord)>) -> Result<(), StoreError> {
        let maxlen = self.settings.feed_max_len;
        let stored = self
            .run("insert", move |mut c, s, prefix| async move {
                let args = wire::token_args(&prefix, maxlen, &tokens);
                let mut inv = s.insert.prepare_invoke();
                for a in &args {
                    inv.arg(a.as_slice());
                }
                inv.invoke_async::<i64>(&mut c).await
            })
            .await?;
        if stored == 1 {
            Ok(())
        } else {
            Err(StoreError::RedisReply {
                op: "insert",
                what: "a token with this digest is already stored",
            })
        }
    }

    async fn get(&self, digest: &Digest) -> Result<Option<TokenRecord>, StoreError> {
        let d = *digest;
        let fields = self
            .run("get", move |mut c, _, prefix| async move {
                ::redis::cmd("HMGET")
                    .arg(format!("{prefix}t:{}", hex(&d)))
                    .arg(&["k", "rec", "e", "u", "x"])
                    .query_async::<Vec<Option<Vec<u8>>>>(&mut c)
                    .await
            })
            .await?;
        wire::record_from_fields(&fields)
    }

    async fn rotate(
        &self,
        used: Digest,
        successors: Vec<(Digest, TokenRecord)>,
        now: i64,
        grace: i64,
        reuse_until: Option<i64>,
    ) -> Result<Rotation, StoreError> {
        let maxlen = self.settings.feed_max_len;
        let (outcome, grant) = self
            .run("rotate", move |mut c, s, prefix| async move {
                let mut inv = s.rotate.prepare_invoke();
                inv.arg(&prefix)
                    .arg(maxlen)
                    .arg(hex(&used))
                    .arg(now)
                    .arg(grace)
                    .arg(reuse_until.map(|u| u.to_string()).unwrap_or_default());
                let mut groups = Vec::new();
                for (d, t) in &successors {
                    wire::push_token(&mut groups, d, t);
                }
                for a in &groups {
                    inv.arg(a.as_slice());
                }
                inv.invoke_async::<(String, String)>(&mut c).await
            })
            .await?;
        Ok(match outcome.as_str() {
            "rotated" => Rotation::Rotated,
            "grace" => Rotation::WithinGrace,
            "reused" => Rotation::Reused {
                grant_id: GrantId::new(grant),
            },
            _ => Rotation::Inactive,
        })
    }

    async fn revoke(&self, what: Revoke) -> Result<(), StoreError> {
        let maxlen = self.settings.feed_max_len;
        let revocation = what.revocation();
        let member = revocation.target.encode();
        let until = revocation.until.map(|u| u.to_string()).unwrap_or_default();
        let (kind, digest, grant) = match &what {
            Revoke::Token { digest, .. } => ("token", digest.map(|d| hex(&d)), String::new()),
            Revoke::Grant { grant_id, .. } => ("grant", None, grant_id.as_str().to_string()),
            Revoke::Client { .. } | Revoke::User { .. } => ("other", None, String::new()),
        };
        self.run("revoke", move |mut c, s, prefix| async move {
            s.revoke
                .prepare_invoke()
                .arg(&prefix)
                .arg(maxlen)
                .arg(kind)
                .arg(&member)
                .arg(&until)
                .arg(digest.unwrap_or_default())
                .arg(&grant)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(drop)
    }

    async fn revocations(
        &self,
        after: &Cursor,
        wait: Duration,
        now: i64,
    ) -> Result<Feed, StoreError> {
        let cursor = after.clone();
        self.run_dedicated(
            "feed",
            |live| &live.feed,
            wait,
            move |mut c, fresh, _, prefix| async move {
                feed::read_feed(&mut c, fresh, &prefix, &cursor, wait, now).await
            },
        )
        .await
    }

    async fn purge(&self, now: i64) -> Result<u64, StoreError> {
        self.run("purge", move |mut c, _, prefix| async move {
            ::redis::cmd("ZREMRANGEBYSCORE")
                .arg(format!("{prefix}revoked"))
                .arg("-inf")
                .arg(format!("({now}"))
                .query_async::<u64>(&mut c)
                .await
        })
        .await
    }

    async fn key_set(&self) -> Result<Option<KeySetDoc>, StoreError> {
        let (version, doc) = self
            .run("key_set", |mut c, _, prefix| async move {
                ::redis::cmd("HMGET")
                    .arg(format!("{prefix}keyset"))
                    .arg(&["v", "doc"])
                    .query_async::<(Option<u64>, Option<Vec<u8>>)>(&mut c)
                    .await
            })
            .await?;
        Ok(version
            .zip(doc)
            .map(|(version, doc)| KeySetDoc { version, doc }))
    }

    async fn replace_key_set(
        &self,
        expected: Option<u64>,
        doc: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let maxlen = self.settings.feed_max_len;
        self.run("replace_key_set", move |mut c, s, prefix| async move {
            s.replace_key_set
                .prepare_invoke()
                .arg(&prefix)
                .arg(maxlen)
                .arg(expected.map(|v| v.to_string()).unwrap_or_default())
                .arg(doc.as_slice())
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|n| n == 1)
    }

    async fn legacy_key(&self, _name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        // Key sets came before Redis support: there is nothing older to migrate.
        Ok(None)
    }

    async fn put_ephemeral(
        &self,
        kind: Ephemeral,
        key: Digest,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.run("put_ephemeral", move |mut c, _, prefix| async move {
            let k = wire::ephemeral_key(&prefix, kind, &key);
            ::redis::pipe()
                .atomic()
                .cmd("DEL")
                .arg(&k)
                .ignore()
                .cmd("HSET")
                .arg(&k)
                .arg("v")
                .arg(value.as_slice())
                .ignore()
                .cmd("PEXPIREAT")
                .arg(&k)
                .arg(expires_at.saturating_mul(1000))
                .ignore()
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    async fn claim_ephemeral(
        &self,
        kind: Ephemeral,
        key: Digest,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let maxlen = self.settings.feed_max_len;
        self.run("claim_ephemeral", move |mut c, s, prefix| async move {
            s.claim
                .prepare_invoke()
                .arg(&prefix)
                .arg(maxlen)
                .arg(wire::ephemeral_key(&prefix, kind, &key))
                .arg(value.as_slice())
                .arg(expires_at.saturating_mul(1000))
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|n| n == 1)
    }

    async fn remember_once(
        &self,
        kind: Ephemeral,
        key: Digest,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        self.run("remember_once", move |mut c, _, prefix| async move {
            ::redis::cmd("SET")
                .arg(wire::ephemeral_key(&prefix, kind, &key))
                .arg(1)
                .arg("NX")
                .arg("PXAT")
                .arg(expires_at.saturating_mul(1000))
                .query_async::<Option<String>>(&mut c)
                .await
        })
        .await
        .map(|set| set.is_some())
    }

    async fn get_ephemeral(
        &self,
        kind: Ephemeral,
        key: &Digest,
        _now: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = *key;
        self.run("get_ephemeral", move |mut c, _, prefix| async move {
            ::redis::cmd("HGET")
                .arg(wire::ephemeral_key(&prefix, kind, &key))
                .arg("v")
                .query_async::<Option<Vec<u8>>>(&mut c)
                .await
        })
        .await
    }

    async fn consume_ephemeral(
        &self,
        kind: Ephemeral,
        key: &Digest,
        _now: i64,
    ) -> Result<Consumed, StoreError> {
        let key = *key;
        let maxlen = self.settings.feed_max_len;
        let (outcome, value) = self
            .run("consume_ephemeral", move |mut c, s, prefix| async move {
                s.consume
                    .prepare_invoke()
                    .arg(&prefix)
                    .arg(maxlen)
                    .arg(wire::ephemeral_key(&prefix, kind, &key))
                    .invoke_async::<(String, Vec<u8>)>(&mut c)
                    .await
            })
            .await?;
        Ok(match outcome.as_str() {
            "first" => Consumed::First(value),
            "again" => Consumed::Again(value),
            _ => Consumed::Missing,
        })
    }

    async fn delete_ephemeral(&self, kind: Ephemeral, key: &Digest) -> Result<(), StoreError> {
        let key = *key;
        self.run("delete_ephemeral", move |mut c, _, prefix| async move {
            ::redis::cmd("DEL")
                .arg(wire::ephemeral_key(&prefix, kind, &key))
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    async fn put_record(
        &self,
        kind: RecordKind,
        name: &str,
        expected: Option<u64>,
        doc: Vec<u8>,
    ) -> Result<Written, StoreError> {
        self.write_record(kind, name, expected, Some(doc)).await
    }

    async fn delete_record(
        &self,
        kind: RecordKind,
        name: &str,
        expected: u64,
    ) -> Result<Written, StoreError> {
        self.write_record(kind, name, Some(expected), None).await
    }

    async fn get_record(&self, kind: RecordKind, name: &str) -> Result<Option<Record>, StoreError> {
        self.read_record(kind, name).await
    }

    async fn records_after(
        &self,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<RecordFeed, StoreError> {
        self.read_records_after(after, limit, wait).await
    }
}
