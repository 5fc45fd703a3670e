//! The embedded store: one SQLite database in the state directory, in WAL mode so that the
//! old and the new process share it during a graceful upgrade.
//!
//! Writes go to one writer thread that groups whatever is queued into a single
//! transaction (group commit): one fsync covers every token in the batch, and each caller
//! gets its answer only after the commit. Reads use a small pool of read-only connections.
//! Tokens are appended in issue order and found through an in-memory digest index
//! (`index`), so a growing store does not slow issuance.

use super::{
    Consumed, Cursor, Digest, Ephemeral, Feed, KeySetDoc, Revocation, RevocationTarget, Revoke,
    Rotation, Store, StoreError, TokenKind, TokenRecord,
};
use crate::config::StoreSync;
use crate::domain::oauth::{Family, Format};
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
mod schema;
mod writer;

/// How long a write waits for another process holding the database.
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// How often an idle revocation feed looks again (other processes on this machine).
const FEED_POLL: Duration = Duration::from_millis(200);

/// Revocation kinds in the `revocations` table.
const REV_JTI: i64 = 1;
const REV_GRANT: i64 = 2;
const REV_CLIENT: i64 = 3;
const REV_USER: i64 = 4;

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

fn family_code(f: Family) -> i64 {
    match f {
        Family::Auth => 1,
        Family::Credential => 2,
    }
}

fn format_code(f: Format) -> i64 {
    match f {
        Format::Jwt => 1,
        Format::Opaque => 2,
    }
}

fn insert(
    tx: &Connection,
    index: &DigestIndex,
    tokens: &[(Digest, TokenRecord)],
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO tokens (digest, kind, jti, grant_id, client_id, family, username, scope,
            audience, format, issued_at, expires_at, used_at, revoked)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    for (digest, t) in tokens {
        // A digest is stored at most once (the table no longer has it as its key). The
        // writer's index is complete, so asking it is asking the table.
        if find(tx, index, digest)?.is_some() {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY),
                Some("the token is already stored".into()),
            ));
        }
        stmt.execute(params![
            &digest[..],
            match t.kind {
                TokenKind::Access => 1,
                TokenKind::Refresh => 2,
            },
            t.jti,
            t.grant_id,
            t.client_id,
            family_code(t.family),
            t.username,
            t.scope,
            t.audiences.join(" "),
            format_code(t.format),
            t.issued_at,
            t.expires_at,
            t.used_at,
            t.revoked,
        ])?;
        index.add(digest, tx.last_insert_rowid());
    }
    Ok(())
}

const SELECT_TOKEN: &str =
    "SELECT kind, jti, grant_id, client_id, family, username, scope, audience,
    format, issued_at, expires_at, used_at, revoked, digest FROM tokens WHERE id = ?1";

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    let audience: String = row.get(7)?;
    Ok(TokenRecord {
        kind: if row.get::<_, i64>(0)? == 2 {
            TokenKind::Refresh
        } else {
            TokenKind::Access
        },
        jti: row.get(1)?,
        grant_id: row.get(2)?,
        client_id: row.get(3)?,
        family: if row.get::<_, i64>(4)? == 1 {
            Family::Auth
        } else {
            Family::Credential
        },
        username: row.get(5)?,
        scope: row.get(6)?,
        audiences: audience
            .split(' ')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
        format: if row.get::<_, i64>(8)? == 1 {
            Format::Jwt
        } else {
            Format::Opaque
        },
        issued_at: row.get(9)?,
        expires_at: row.get(10)?,
        used_at: row.get(11)?,
        revoked: row.get(12)?,
    })
}

/// The row holding `digest` and its record, through the index: each candidate row is
/// checked against the full digest.
fn find(
    conn: &Connection,
    index: &DigestIndex,
    digest: &Digest,
) -> rusqlite::Result<Option<(i64, TokenRecord)>> {
    let mut stmt = conn.prepare_cached(SELECT_TOKEN)?;
    for id in index.candidates(digest).ids() {
        let found = stmt
            .query_row(params![id], |row| {
                if row.get_ref(13)?.as_blob()? == &digest[..] {
                    row_to_record(row).map(Some)
                } else {
                    Ok(None)
                }
            })
            .optional()?
            .flatten();
        if let Some(record) = found {
            return Ok(Some((id, record)));
        }
    }
    Ok(None)
}

/// A reader's lookup: a digest the index does not know may be in a row another process
/// appended since, so those rows are indexed and the lookup tried once more.
fn get(
    conn: &Connection,
    index: &DigestIndex,
    digest: &Digest,
) -> rusqlite::Result<Option<TokenRecord>> {
    if let Some((_, record)) = find(conn, index, digest)? {
        return Ok(Some(record));
    }
    if !index.catch_up(conn)? {
        return Ok(None);
    }
    Ok(find(conn, index, digest)?.map(|(_, record)| record))
}

/// In the writer, whose index is complete (it caught up at the start of the batch, under
/// the write lock): a digest it does not know is not stored.
fn rotate(
    tx: &Connection,
    index: &DigestIndex,
    used: &Digest,
    successors: &[(Digest, TokenRecord)],
    now: i64,
    grace: i64,
    reuse_until: Option<i64>,
) -> rusqlite::Result<Rotation> {
    let Some((id, record)) = find(tx, index, used)? else {
        return Ok(Rotation::Inactive);
    };
    if record.kind != TokenKind::Refresh || !record.is_live(now) {
        return Ok(Rotation::Inactive);
    }
    match record.used_at {
        None => {
            tx.prepare_cached("UPDATE tokens SET used_at = ?2 WHERE id = ?1")?
                .execute(params![id, now])?;
            insert(tx, index, successors)?;
            Ok(Rotation::Rotated)
        }
        Some(at) if now - at < grace => {
            insert(tx, index, successors)?;
            Ok(Rotation::WithinGrace)
        }
        Some(_) => {
            revoke(
                tx,
                index,
                &Revoke::Grant {
                    grant_id: record.grant_id.clone(),
                    until: reuse_until,
                },
            )?;
            Ok(Rotation::Reused {
                grant_id: record.grant_id,
            })
        }
    }
}

fn revoke(tx: &Connection, index: &DigestIndex, what: &Revoke) -> rusqlite::Result<()> {
    let (kind, id, until, before) = match what {
        Revoke::Token { jti, digest, until } => {
            if let Some(d) = digest
                && let Some((row, _)) = find(tx, index, d)?
            {
                tx.prepare_cached("UPDATE tokens SET revoked = 1 WHERE id = ?1")?
                    .execute(params![row])?;
            }
            (REV_JTI, jti, until, None)
        }
        Revoke::Grant { grant_id, until } => {
            tx.prepare_cached("UPDATE tokens SET revoked = 1 WHERE grant_id = ?1")?
                .execute(params![grant_id])?;
            (REV_GRANT, grant_id, until, None)
        }
        // Stored tokens of a client or user are refused through the revocation set, which
        // every reader of a token record consults; no scan of the token table is needed.
        Revoke::Client {
            client_id,
            issued_before,
            until,
        } => (REV_CLIENT, client_id, until, Some(*issued_before)),
        Revoke::User {
            username,
            issued_before,
            until,
        } => (REV_USER, username, until, Some(*issued_before)),
    };
    tx.prepare_cached(
        "INSERT INTO revocations (kind, id, until, issued_before) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![kind, id, until, before])?;
    Ok(())
}

/// How many rows went, and the deleted tokens for the index to forget once committed.
fn purge(tx: &Connection, now: i64) -> rusqlite::Result<(u64, Vec<(Digest, i64)>)> {
    let mut deleted = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at < ?1
             RETURNING id, digest",
        )?;
        let mut rows = stmt.query(params![now])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            // A digest of another length was never indexed under it: nothing to forget.
            if let Ok(d) = Digest::try_from(row.get_ref(1)?.as_blob()?) {
                deleted.push((d, id));
            }
        }
    }
    let tokens = deleted.len();
    let revocations = tx
        .prepare_cached("DELETE FROM revocations WHERE until IS NOT NULL AND until < ?1")?
        .execute(params![now])?;
    let ephemeral = tx
        .prepare_cached("DELETE FROM ephemeral WHERE expires_at < ?1")?
        .execute(params![now])?;
    Ok(((tokens + revocations + ephemeral) as u64, deleted))
}

fn row_to_revocation(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Option<Revocation>)> {
    let seq: i64 = r.get(0)?;
    let id: String = r.get(2)?;
    let before: Option<i64> = r.get(4)?;
    let target = match (r.get::<_, i64>(1)?, before) {
        (REV_JTI, _) => Some(RevocationTarget::Jti(id)),
        (REV_GRANT, _) => Some(RevocationTarget::Grant(id)),
        (REV_CLIENT, Some(issued_before)) => Some(RevocationTarget::Client {
            client_id: id,
            issued_before,
        }),
        (REV_USER, Some(issued_before)) => Some(RevocationTarget::User {
            username: id,
            issued_before,
        }),
        // A kind from a newer tollgate: skipped, but the cursor still moves past it.
        _ => None,
    };
    Ok((
        seq,
        target.map(|target| Revocation {
            target,
            until: r.get(3).ok().flatten(),
        }),
    ))
}

fn revocations_after(
    conn: &Connection,
    seq: i64,
    now: i64,
) -> rusqlite::Result<(Vec<Revocation>, i64)> {
    // The newest sequence number first: the cursor then passes expired revocations too,
    // and one written by another process between the two statements is read next time.
    let newest: Option<i64> = conn
        .prepare_cached("SELECT max(seq) FROM revocations")?
        .query_row([], |r| r.get(0))?;
    let newest = newest.unwrap_or(seq).max(seq);
    let mut stmt = conn.prepare_cached(
        "SELECT seq, kind, id, until, issued_before FROM revocations
         WHERE seq > ?1 AND seq <= ?2 AND (until IS NULL OR until >= ?3) ORDER BY seq",
    )?;
    let mut out = Vec::new();
    for row in stmt.query_map(params![seq, newest, now], row_to_revocation)? {
        out.extend(row?.1);
    }
    Ok((out, newest))
}

fn replace_key_set(tx: &Connection, expected: Option<u64>, doc: &[u8]) -> rusqlite::Result<bool> {
    let current: Option<i64> = tx
        .prepare_cached("SELECT version FROM key_set WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    if current.map(|v| v as u64) != expected {
        return Ok(false);
    }
    let next = expected.map_or(1, |v| v + 1) as i64;
    tx.prepare_cached(
        "INSERT INTO key_set (id, version, doc) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version, doc = excluded.doc",
    )?
    .execute(params![next, doc])?;
    Ok(true)
}

fn consume_ephemeral(
    tx: &Connection,
    kind: Ephemeral,
    key: &Digest,
    now: i64,
) -> rusqlite::Result<Consumed> {
    let row: Option<(Vec<u8>, i64, bool)> = tx
        .prepare_cached(
            "SELECT value, expires_at, used FROM ephemeral WHERE kind = ?1 AND key = ?2",
        )?
        .query_row(params![kind.code(), &key[..]], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    match row {
        Some((value, expires_at, _)) if expires_at <= now => {
            drop(value);
            Ok(Consumed::Missing)
        }
        Some((value, _, true)) => Ok(Consumed::Again(value)),
        Some((value, _, false)) => {
            tx.prepare_cached("UPDATE ephemeral SET used = 1 WHERE kind = ?1 AND key = ?2")?
                .execute(params![kind.code(), &key[..]])?;
            Ok(Consumed::First(value))
        }
        None => Ok(Consumed::Missing),
    }
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
        self.write(one, move |tx| insert(tx, &index, &tokens)).await
    }

    async fn get(&self, digest: &Digest) -> Result<Option<TokenRecord>, StoreError> {
        self.read(|c| get(c, &self.index, digest))
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
            rotate(tx, &index, &used, &successors, now, grace, reuse_until)
        })
        .await
    }

    async fn revoke(&self, what: Revoke) -> Result<(), StoreError> {
        let index = Arc::clone(&self.index);
        self.write(false, move |tx| revoke(tx, &index, &what)).await
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
        let (revocations, last) = self.read(|c| revocations_after(c, from, now))?;
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
        let (n, deleted) = self.write(false, move |tx| purge(tx, now)).await?;
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
        self.write(false, move |tx| replace_key_set(tx, expected, &doc))
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
        self.write(false, move |tx| consume_ephemeral(tx, kind, &key, now))
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
}
