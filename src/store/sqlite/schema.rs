//! The schema of the embedded store: its tables, and the migration of an older file (run
//! at open, in one transaction) up to [`SCHEMA_VERSION`].

use rusqlite::Connection;

/// The schema version this code writes (`PRAGMA user_version`). 3: tokens in issue order
/// (`id`), found through the in-memory digest index (`index`); 2 kept them keyed by digest.
/// Columns added since (`tokens.cnf`) are nullable and added where missing, and tables
/// added since (`records`) are created where missing, without a new version: a previous
/// release still opens the file (a rollback keeps working; it leaves the new table alone).
const SCHEMA_VERSION: i64 = 3;

/// The token table's columns after `id`, as version 2 had them too.
const TOKEN_COLUMNS: &str = "digest, kind, jti, grant_id, client_id, family, username, scope,
    audience, format, issued_at, expires_at, used_at, revoked";

/// Rows are appended in issue order: `AUTOINCREMENT` so that an id is never given out twice
/// (the digest index relies on it; see `index`). The digest is kept whole, unindexed.
const TOKENS_TABLE: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    digest BLOB NOT NULL,
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
    revoked INTEGER NOT NULL DEFAULT 0,
    cnf TEXT
);
";

const SCHEMA: &str = "
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
CREATE TABLE IF NOT EXISTS key_set (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    doc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS ephemeral (
    kind INTEGER NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ephemeral_by_expiry ON ephemeral(expires_at);
-- Provisioned records. One version sequence for every kind: max + 1, taken inside the
-- write transaction. A NULL doc is a tombstone, kept so that a follower reading from the
-- start learns of deletions too. A rowid table: documents may be larger than the rows a
-- WITHOUT ROWID table suits.
CREATE TABLE IF NOT EXISTS records (
    kind INTEGER NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    doc BLOB,
    PRIMARY KEY (kind, name)
);
CREATE UNIQUE INDEX IF NOT EXISTS records_by_version ON records(version);
";

/// Create the schema, or bring an older one up to [`SCHEMA_VERSION`], in one transaction
/// (another process may be doing the same at the same moment).
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "schema version {version} is newer than this tollgate knows ({SCHEMA_VERSION})"
            )));
        }
        migrate_tokens(conn)?;
        conn.execute_batch(SCHEMA)?;
        let has_column = conn
            .prepare("SELECT 1 FROM pragma_table_info('revocations') WHERE name = 'issued_before'")?
            .exists([])?;
        if !has_column {
            conn.execute_batch("ALTER TABLE revocations ADD COLUMN issued_before INTEGER")?;
        }
        let has_cnf = conn
            .prepare("SELECT 1 FROM pragma_table_info('tokens') WHERE name = 'cnf'")?
            .exists([])?;
        if !has_cnf {
            conn.execute_batch("ALTER TABLE tokens ADD COLUMN cnf TEXT")?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            // The transaction is abandoned either way; the first error is the one to report.
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Create the token table, or move a version 2 table (keyed by digest) into the issue-order
/// one: rows copied in issue order, the old table and its indexes dropped. A run of the old
/// code on the same file (the other side of a graceful upgrade) can still write to the new
/// table, whose column names are the same; it finds rows by scanning, slowly, until it
/// exits.
fn migrate_tokens(conn: &Connection) -> rusqlite::Result<()> {
    let exists = conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tokens'")?
        .exists([])?;
    if !exists {
        return conn.execute_batch(TOKENS_TABLE);
    }
    let has_id = conn
        .prepare("SELECT 1 FROM pragma_table_info('tokens') WHERE name = 'id'")?
        .exists([])?;
    if has_id {
        return Ok(());
    }
    conn.execute_batch("ALTER TABLE tokens RENAME TO tokens_v2")?;
    conn.execute_batch(TOKENS_TABLE)?;
    conn.execute_batch(&format!(
        "INSERT INTO tokens ({TOKEN_COLUMNS}) SELECT {TOKEN_COLUMNS} FROM tokens_v2
         ORDER BY issued_at;
         DROP TABLE tokens_v2;"
    ))
}
