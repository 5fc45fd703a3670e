//! The embedded store: one SQLite database in the state directory, in WAL mode so that the
//! old and the new process share it during a graceful upgrade.
//!
//! Writes go to one writer thread that groups whatever is queued into a single
//! transaction (group commit): one fsync covers every token in the batch, and each caller
//! gets its answer only after the commit. Reads use a small pool of read-only connections.
//! Tokens are appended in issue order and found through an in-memory digest index
//! (`index`), so a growing store does not slow issuance.

use super::{
    Consumed, Cursor, Digest, Ephemeral, Feed, KeySetDoc, Record, RecordFeed, RecordKind, Revoke,
    Rotation, Store, StoreError, TokenRecord, Written,
};
use crate::config::StoreSync;
use async_trait::async_trait;
use index::DigestIndex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use schema::migrate;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use writer::{Job, Typed, run_writer};

mod index;
pub(in crate::store) mod records;
mod schema;
mod sql;
mod watch;
mod writer;

/// How long a write waits for another process holding the database.
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// How often an idle revocation feed looks again (other processes on this machine).
const FEED_POLL: Duration = Duration::from_millis(200);

/// How often a waiting record feed looks again: a change made by another process on the
/// file is in force here within this (plus the follower's own step).
const RECORD_POLL: Duration = Duration::from_millis(50);

/// A failure of the store's file at `path`, doing `action`.
fn file_error(action: &'static str, path: &Path) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    move |e| StoreError::File {
        action,
        path,
        source: Arc::new(e),
    }
}

/// The writer thread of one process.
struct Writer {
    pid: u32,
    jobs: mpsc::Sender<Job>,
}

/// Read connections of one process.
struct Readers {
    pid: u32,
    pool: Vec<Connection>,
}

/// Connections and the writer thread are opened on first use, by the process that uses
/// them: a daemon forks after startup, and neither threads nor SQLite connections survive
/// a fork (sqlite.org/howtocorrupt.html §2.6).
pub struct SqliteStore {
    writer: Mutex<Option<Writer>>,
    readers: Mutex<Readers>,
    path: PathBuf,
    sync: StoreSync,
    /// Token row ids by digest, shared with the writer thread.
    index: Arc<DigestIndex>,
    /// Lets an idle feed poll skip its statements when nothing was committed.
    watch: watch::Watch,
}

impl SqliteStore {
    /// Create the database at `path` if needed (or bring its schema up to date) and check
    /// that it can be written.
    pub fn open(path: &Path, sync: StoreSync) -> Result<Self, StoreError> {
        // Set up with a connection of its own, closed again before returning.
        let conn = open_writer_connection(path, sync)?;
        let index = DigestIndex::build(&conn).map_err(file_error("index the tokens of", path))?;
        Ok(Self {
            writer: Mutex::new(None),
            readers: Mutex::new(Readers {
                pid: std::process::id(),
                pool: Vec::new(),
            }),
            path: path.to_path_buf(),
            sync,
            index: Arc::new(index),
            watch: watch::Watch::new(),
        })
    }

    /// This process's writer thread, started if needed.
    fn jobs(&self) -> Result<mpsc::Sender<Job>, StoreError> {
        let pid = std::process::id();
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = writer.as_ref()
            && w.pid == pid
        {
            return Ok(w.jobs.clone());
        }
        let conn = open_writer_connection(&self.path, self.sync)?;
        let checkpoints = open_checkpoint_connection(&self.path, self.sync)?;
        let (tx, rx) = mpsc::channel();
        let index = Arc::clone(&self.index);
        std::thread::Builder::new()
            .name("tollgate-store".into())
            .spawn(move || run_writer(conn, rx, checkpoints, &index))
            .map_err(|e| StoreError::WriterStart(Arc::new(e)))?;
        // A writer inherited from the parent of a fork is left alone: its thread is gone.
        *writer = Some(Writer {
            pid,
            jobs: tx.clone(),
        });
        Ok(tx)
    }

    /// Queue `run` for the writer; its result once the batch has committed.
    async fn write<T, F>(&self, one_statement: bool, run: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.jobs()?
            .send(Typed::job(one_statement, run, tx))
            .map_err(|_| StoreError::Writer("has stopped"))?;
        rx.await.map_err(|_| StoreError::Writer("has stopped"))?
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let pooled = {
            let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            let pid = std::process::id();
            if readers.pid != pid {
                // Connections opened before a fork belong to the parent: never use or close
                // them here.
                std::mem::forget(std::mem::take(&mut readers.pool));
                readers.pid = pid;
            }
            readers.pool.pop()
        };
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(StoreError::from)?;
                c.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS.into()))
                    .map_err(StoreError::from)?;
                c
            }
        };
        let result = f(&conn).map_err(StoreError::from);
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if readers.pid == std::process::id() {
            readers.pool.push(conn);
        }
        result
    }
}

fn open_checkpoint_connection(path: &Path, sync: StoreSync) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(file_error("open", path))?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS.into()))
        .map_err(StoreError::from)?;
    conn.pragma_update(None, "synchronous", sync_pragma(sync))
        .map_err(StoreError::from)?;
    Ok(conn)
}

fn sync_pragma(sync: StoreSync) -> &'static str {
    match sync {
        StoreSync::Full => "FULL",
        StoreSync::Normal => "NORMAL",
    }
}

fn open_writer_connection(path: &Path, sync: StoreSync) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(file_error("open", path))?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS.into()))
        .map_err(StoreError::from)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(file_error("use", path))?;
    conn.pragma_update(None, "synchronous", sync_pragma(sync))
        .map_err(StoreError::from)?;
    // The writer's page cache holds the hot part of the token tables (SQLite's default is
    // 2 MiB). The write-ahead log is copied back into the database by the checkpointer
    // thread, off the commit path; the writer checkpoints itself only as a backstop, should
    // the log pass 64 MiB. Profiled under opaque issuance, checkpoints in the commit were
    // a fifth of the gateway's CPU time and page reads a tenth.
    conn.pragma_update(None, "cache_size", -65_536)
        .map_err(StoreError::from)?;
    conn.pragma_update(None, "wal_autocheckpoint", 16_384)
        .map_err(StoreError::from)?;
    migrate(&conn).map_err(file_error("bring up to date the schema of", path))?;
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    async fn insert(&self, tokens: Vec<(Digest, TokenRecord)>) -> Result<(), StoreError> {
        let one = tokens.len() == 1;
        let index = Arc::clone(&self.index);
        self.write(one, move |tx| sql::insert(tx, &index, &tokens))
            .await
    }

    async fn get(&self, digest: &Digest) -> Result<Option<TokenRecord>, StoreError> {
        self.read(|c| sql::get(c, &self.index, digest))
    }

    async fn rotate(
        &self,
        used: Digest,
        successors: Vec<(Digest, TokenRecord)>,
        now: i64,
        grace: i64,
        reuse_until: Option<i64>,
    ) -> Result<Rotation, StoreError> {
        let index = Arc::clone(&self.index);
        self.write(false, move |tx| {
            sql::rotate(tx, &index, &used, &successors, now, grace, reuse_until)
        })
        .await
    }

    async fn revoke(&self, what: Revoke) -> Result<(), StoreError> {
        let index = Arc::clone(&self.index);
        self.write(false, move |tx| sql::revoke(tx, &index, &what))
            .await
    }

    async fn revocations(
        &self,
        after: &Cursor,
        wait: Duration,
        now: i64,
    ) -> Result<Feed, StoreError> {
        let (from, full) = match &after.0 {
            None => (0, true),
            // A cursor this store did not make (another backend's): start over.
            Some(c) => c.parse::<i64>().map_or((0, true), |s| (s, false)),
        };
        let (revocations, last) = if full {
            self.read(|c| sql::revocations_after(c, from, now))?
        } else if let Some(version) =
            self.watch
                .changed(&self.path, watch::Feed::Revocations, from.cast_unsigned())?
        {
            let read = self.read(|c| sql::revocations_after(c, from, now))?;
            if read.0.is_empty() {
                // Nothing after `from` up to the newest number, which the cursor moves to.
                let cursor = read.1.cast_unsigned();
                self.watch
                    .found_nothing(watch::Feed::Revocations, cursor, version);
            }
            read
        } else {
            (Vec::new(), from)
        };
        if revocations.is_empty() && !full {
            tokio::time::sleep(wait.min(FEED_POLL)).await;
        }
        Ok(Feed {
            revocations,
            next: Cursor(Some(last.to_string())),
            full,
        })
    }

    async fn purge(&self, now: i64) -> Result<u64, StoreError> {
        let (n, deleted) = self.write(false, move |tx| sql::purge(tx, now)).await?;
        self.index.remove(&deleted);
        Ok(n)
    }

    async fn key_set(&self) -> Result<Option<KeySetDoc>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT version, doc FROM key_set WHERE id = 1")?
                .query_row([], |r| {
                    Ok(KeySetDoc {
                        version: r.get::<_, i64>(0)? as u64,
                        doc: r.get(1)?,
                    })
                })
                .optional()
        })
    }

    async fn replace_key_set(
        &self,
        expected: Option<u64>,
        doc: Vec<u8>,
    ) -> Result<bool, StoreError> {
        self.write(false, move |tx| sql::replace_key_set(tx, expected, &doc))
            .await
    }

    async fn legacy_key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT der FROM signing_keys WHERE name = ?1")?
                .query_row(params![name], |r| r.get(0))
                .optional()
        })
    }

    async fn put_ephemeral(
        &self,
        kind: Ephemeral,
        key: Digest,
        value: Vec<u8>,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.write(true, move |tx| {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO ephemeral (kind, key, value, expires_at, used)
                 VALUES (?1, ?2, ?3, ?4, 0)",
            )?
            .execute(params![kind.code(), &key[..], value, expires_at])
            .map(drop)
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
        let now = crate::domain::clock::unix_now();
        self.write(false, move |tx| {
            // An expired record no longer holds its key.
            tx.prepare_cached(
                "DELETE FROM ephemeral WHERE kind = ?1 AND key = ?2 AND expires_at <= ?3",
            )?
            .execute(params![kind.code(), &key[..], now])?;
            tx.prepare_cached(
                "INSERT OR IGNORE INTO ephemeral (kind, key, value, expires_at, used)
                 VALUES (?1, ?2, ?3, ?4, 0)",
            )?
            .execute(params![kind.code(), &key[..], value, expires_at])
            .map(|n| n == 1)
        })
        .await
    }

    async fn get_ephemeral(
        &self,
        kind: Ephemeral,
        key: &Digest,
        now: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT value FROM ephemeral WHERE kind = ?1 AND key = ?2 AND expires_at > ?3",
            )?
            .query_row(params![kind.code(), &key[..], now], |r| r.get(0))
            .optional()
        })
    }

    async fn consume_ephemeral(
        &self,
        kind: Ephemeral,
        key: &Digest,
        now: i64,
    ) -> Result<Consumed, StoreError> {
        let key = *key;
        self.write(false, move |tx| sql::consume_ephemeral(tx, kind, &key, now))
            .await
    }

    async fn delete_ephemeral(&self, kind: Ephemeral, key: &Digest) -> Result<(), StoreError> {
        let key = *key;
        self.write(true, move |tx| {
            tx.prepare_cached("DELETE FROM ephemeral WHERE kind = ?1 AND key = ?2")?
                .execute(params![kind.code(), &key[..]])
                .map(drop)
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
        let name = name.to_string();
        self.write(false, move |tx| {
            records::write(tx, kind, &name, expected, Some(&doc))
        })
        .await
    }

    async fn delete_record(
        &self,
        kind: RecordKind,
        name: &str,
        expected: u64,
    ) -> Result<Written, StoreError> {
        let name = name.to_string();
        self.write(false, move |tx| {
            records::write(tx, kind, &name, Some(expected), None)
        })
        .await
    }

    async fn get_record(&self, kind: RecordKind, name: &str) -> Result<Option<Record>, StoreError> {
        self.read(|c| records::get(c, kind, name))
    }

    async fn records_after(
        &self,
        after: u64,
        limit: usize,
        wait: Duration,
    ) -> Result<RecordFeed, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(version) = self
                .watch
                .changed(&self.path, watch::Feed::Records, after)?
            {
                let feed = self.read(|c| records::after(c, after, limit))?;
                if feed.full || !feed.records.is_empty() {
                    return Ok(feed);
                }
                self.watch
                    .found_nothing(watch::Feed::Records, after, version);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(RecordFeed {
                    records: Vec::new(),
                    full: false,
                });
            }
            tokio::time::sleep(left.min(RECORD_POLL)).await;
        }
    }
}
