//! The embedded store: one SQLite database in the state directory, in WAL mode so that the
//! old and the new process share it during a graceful upgrade.
//!
//! Writes go to one writer thread that groups whatever is queued into a single
//! transaction (group commit): one fsync covers every token in the batch, and each caller
//! gets its answer only after the commit. Reads use a small pool of read-only connections.

use super::{
    Digest, Revocation, RevocationTarget, Revoke, Rotation, Store, StoreError, TokenKind,
    TokenRecord,
};
use crate::config::{Family, Format, StoreSync};
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use tokio::sync::oneshot;
use writer::{Job, Reply, run_writer};

mod writer;

/// How long a write waits for another process holding the database.
const BUSY_TIMEOUT_MS: u32 = 5_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    digest BLOB PRIMARY KEY,
    kind INTEGER NOT NULL,
    jti TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    family INTEGER NOT NULL,
    username TEXT,
    scope TEXT NOT NULL,
    audience TEXT NOT NULL,
    format INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER,
    used_at INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tokens_by_grant ON tokens(grant_id);
CREATE INDEX IF NOT EXISTS tokens_by_expiry ON tokens(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL,
    id TEXT NOT NULL,
    until INTEGER
);
CREATE INDEX IF NOT EXISTS revocations_by_until ON revocations(until) WHERE until IS NOT NULL;
CREATE TABLE IF NOT EXISTS signing_keys (
    name TEXT PRIMARY KEY,
    der BLOB NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
";

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
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
}

impl SqliteStore {
    /// Create the database at `path` if needed and check that it can be written.
    pub fn open(path: &Path, sync: StoreSync) -> Result<Self, StoreError> {
        // Set up with a connection of its own, closed again before returning.
        open_writer_connection(path, sync)?;
        Ok(Self {
            writer: Mutex::new(None),
            readers: Mutex::new(Readers {
                pid: std::process::id(),
                pool: Vec::new(),
            }),
            path: path.to_path_buf(),
            sync,
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
        std::thread::Builder::new()
            .name("tollgate-store".into())
            .spawn(move || run_writer(conn, rx, checkpoints))
            .map_err(|e| err(format!("cannot start the store writer: {e}")))?;
        // A writer inherited from the parent of a fork is left alone: its thread is gone.
        *writer = Some(Writer {
            pid,
            jobs: tx.clone(),
        });
        Ok(tx)
    }

    async fn submit<T>(&self, make: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs()?
            .send(make(tx))
            .map_err(|_| err("the store writer has stopped"))?;
        rx.await.map_err(|_| err("the store writer has stopped"))?
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
                .map_err(err)?;
                c.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS.into()))
                    .map_err(err)?;
                c
            }
        };
        let result = f(&conn).map_err(err);
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if readers.pid == std::process::id() {
            readers.pool.push(conn);
        }
        result
    }
}

fn open_checkpoint_connection(path: &Path, sync: StoreSync) -> Result<Connection, StoreError> {
    let conn =
        Connection::open(path).map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS.into()))
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", sync_pragma(sync))
        .map_err(err)?;
    Ok(conn)
}

fn sync_pragma(sync: StoreSync) -> &'static str {
    match sync {
        StoreSync::Full => "FULL",
        StoreSync::Normal => "NORMAL",
    }
}

fn open_writer_connection(path: &Path, sync: StoreSync) -> Result<Connection, StoreError> {
    let conn =
        Connection::open(path).map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS.into()))
        .map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| err(format!("cannot use {}: {e}", path.display())))?;
    conn.pragma_update(None, "synchronous", sync_pragma(sync))
        .map_err(err)?;
    // The writer's page cache holds the hot part of the token tables (SQLite's default is
    // 2 MiB). The write-ahead log is copied back into the database by the checkpointer
    // thread, off the commit path; the writer checkpoints itself only as a backstop, should
    // the log pass 64 MiB. Profiled under opaque issuance, checkpoints in the commit were
    // a fifth of the gateway's CPU time and page reads a tenth.
    conn.pragma_update(None, "cache_size", -65_536)
        .map_err(err)?;
    conn.pragma_update(None, "wal_autocheckpoint", 16_384)
        .map_err(err)?;
    conn.execute_batch(SCHEMA).map_err(|e| {
        err(format!(
            "cannot create the schema in {}: {e}",
            path.display()
        ))
    })?;
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

fn insert(tx: &Connection, tokens: &[(Digest, TokenRecord)]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO tokens (digest, kind, jti, grant_id, client_id, family, username, scope,
            audience, format, issued_at, expires_at, used_at, revoked)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    for (digest, t) in tokens {
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
    }
    Ok(())
}

const SELECT_TOKEN: &str =
    "SELECT kind, jti, grant_id, client_id, family, username, scope, audience,
    format, issued_at, expires_at, used_at, revoked FROM tokens WHERE digest = ?1";

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

fn get(conn: &Connection, digest: &Digest) -> rusqlite::Result<Option<TokenRecord>> {
    conn.prepare_cached(SELECT_TOKEN)?
        .query_row(params![&digest[..]], row_to_record)
        .optional()
}

fn rotate(
    tx: &Connection,
    used: &Digest,
    successors: &[(Digest, TokenRecord)],
    now: i64,
    grace: i64,
    reuse_until: Option<i64>,
) -> rusqlite::Result<Rotation> {
    let Some(record) = get(tx, used)? else {
        return Ok(Rotation::Inactive);
    };
    if record.kind != TokenKind::Refresh || !record.is_live(now) {
        return Ok(Rotation::Inactive);
    }
    match record.used_at {
        None => {
            tx.prepare_cached("UPDATE tokens SET used_at = ?2 WHERE digest = ?1")?
                .execute(params![&used[..], now])?;
            insert(tx, successors)?;
            Ok(Rotation::Rotated)
        }
        Some(at) if now - at < grace => {
            insert(tx, successors)?;
            Ok(Rotation::WithinGrace)
        }
        Some(_) => {
            revoke(
                tx,
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

fn revoke(tx: &Connection, what: &Revoke) -> rusqlite::Result<()> {
    let (kind, id, until) = match what {
        Revoke::Token { jti, digest, until } => {
            if let Some(d) = digest {
                tx.prepare_cached("UPDATE tokens SET revoked = 1 WHERE digest = ?1")?
                    .execute(params![&d[..]])?;
            }
            (1, jti, until)
        }
        Revoke::Grant { grant_id, until } => {
            tx.prepare_cached("UPDATE tokens SET revoked = 1 WHERE grant_id = ?1")?
                .execute(params![grant_id])?;
            (2, grant_id, until)
        }
    };
    tx.prepare_cached("INSERT INTO revocations (kind, id, until) VALUES (?1, ?2, ?3)")?
        .execute(params![kind, id, until])?;
    Ok(())
}

fn purge(tx: &Connection, now: i64) -> rusqlite::Result<u64> {
    let tokens = tx
        .prepare_cached("DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at < ?1")?
        .execute(params![now])?;
    let revocations = tx
        .prepare_cached("DELETE FROM revocations WHERE until IS NOT NULL AND until < ?1")?
        .execute(params![now])?;
    Ok((tokens + revocations) as u64)
}

fn key_or_insert(tx: &Connection, name: &str, der: &[u8]) -> rusqlite::Result<Vec<u8>> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO signing_keys (name, der, created_at) VALUES (?1, ?2, unixepoch())",
    )?
    .execute(params![name, der])?;
    tx.prepare_cached("SELECT der FROM signing_keys WHERE name = ?1")?
        .query_row(params![name], |r| r.get(0))
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert(&self, tokens: Vec<(Digest, TokenRecord)>) -> Result<(), StoreError> {
        self.submit(|r| Job::Insert(tokens, r)).await
    }

    async fn get(&self, digest: &Digest) -> Result<Option<TokenRecord>, StoreError> {
        self.read(|c| get(c, digest))
    }

    async fn rotate(
        &self,
        used: Digest,
        successors: Vec<(Digest, TokenRecord)>,
        now: i64,
        grace: i64,
        reuse_until: Option<i64>,
    ) -> Result<Rotation, StoreError> {
        self.submit(|reply| Job::Rotate {
            used,
            successors,
            now,
            grace,
            reuse_until,
            reply,
        })
        .await
    }

    async fn revoke(&self, what: Revoke) -> Result<(), StoreError> {
        self.submit(|r| Job::Revoke(what, r)).await
    }

    async fn revocations_since(&self, seq: i64, now: i64) -> Result<Vec<Revocation>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, kind, id, until FROM revocations
                 WHERE seq > ?1 AND (until IS NULL OR until >= ?2) ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![seq, now], |r| {
                let id: String = r.get(2)?;
                Ok(Revocation {
                    seq: r.get(0)?,
                    target: if r.get::<_, i64>(1)? == 2 {
                        RevocationTarget::Grant(id)
                    } else {
                        RevocationTarget::Jti(id)
                    },
                    until: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    async fn purge(&self, now: i64) -> Result<u64, StoreError> {
        self.submit(|r| Job::Purge(now, r)).await
    }

    async fn key_or_insert(&self, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let name = name.to_string();
        self.submit(|r| Job::KeyOrInsert(name, candidate, r)).await
    }

    async fn key(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT der FROM signing_keys WHERE name = ?1")?
                .query_row(params![name], |r| r.get(0))
                .optional()
        })
    }
}
