//! The statements of provisioned records: conditional writes that take the next number
//! of the store-wide version sequence, lookups, and the feed read by version.

use super::super::{Record, RecordFeed, RecordKind, Written};
use rusqlite::{Connection, OptionalExtension, params};

/// `kind IN (…)` of the kinds this tollgate knows: rows of a newer tollgate's kinds are
/// passed over (and do not use up a page). The unary `+` keeps the planner off the
/// primary key's `kind` column: the feed walks the version index from the cursor instead
/// of reading and sorting the whole table (37.5 ms a poll at 100,000 records, against
/// 0.009 ms through the index).
fn known_kinds() -> String {
    let codes: Vec<String> = RecordKind::ALL
        .iter()
        .map(|k| k.code().to_string())
        .collect();
    format!("+kind IN ({})", codes.join(", "))
}

/// The feed's statement: records after a version, in version order, up to a limit.
pub(in crate::store) fn feed_sql() -> String {
    format!(
        "SELECT kind, name, version, doc FROM records
         WHERE version > ?1 AND {} ORDER BY version LIMIT ?2",
        known_kinds()
    )
}

/// A version as SQLite stores it (an INTEGER is an i64).
fn to_sql(version: u64) -> rusqlite::Result<i64> {
    i64::try_from(version).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Column `i` of `r`, a version.
fn version_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    let v: i64 = r.get(i)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(i, v))
}

/// Write `doc` (`None`: a tombstone) under (kind, name) if the live version is `expected`.
/// Run in the writer's transaction, which holds the file's write lock: the greatest
/// version cannot change under it, in this process or another.
pub(super) fn write(
    tx: &Connection,
    kind: RecordKind,
    name: &str,
    expected: Option<u64>,
    doc: Option<&[u8]>,
) -> rusqlite::Result<Written> {
    let live: Option<u64> = tx
        .prepare_cached(
            "SELECT version FROM records WHERE kind = ?1 AND name = ?2 AND doc IS NOT NULL",
        )?
        .query_row(params![kind.code(), name], |r| version_at(r, 0))
        .optional()?;
    if live != expected {
        return Ok(Written::Conflict { current: live });
    }
    let top: u64 = tx
        .prepare_cached("SELECT coalesce(max(version), 0) FROM records")?
        .query_row([], |r| version_at(r, 0))?;
    let version = top + 1;
    tx.prepare_cached(
        "INSERT INTO records (kind, name, version, doc) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version, doc = excluded.doc",
    )?
    .execute(params![kind.code(), name, to_sql(version)?, doc])?;
    Ok(Written::Done { version })
}

/// A row of `SELECT kind, name, version, doc`; `None` for a kind this tollgate does not
/// know (the queries leave those out already).
fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Record>> {
    let Some(kind) = RecordKind::from_code(r.get(0)?) else {
        return Ok(None);
    };
    Ok(Some(Record {
        kind,
        name: r.get(1)?,
        version: version_at(r, 2)?,
        doc: r.get(3)?,
    }))
}

pub(super) fn get(
    conn: &Connection,
    kind: RecordKind,
    name: &str,
) -> rusqlite::Result<Option<Record>> {
    Ok(conn
        .prepare_cached(
            "SELECT kind, name, version, doc FROM records
             WHERE kind = ?1 AND name = ?2 AND doc IS NOT NULL",
        )?
        .query_row(params![kind.code(), name], row_to_record)
        .optional()?
        .flatten())
}

/// One look at the feed: the records after `after` (at most `limit`), or the whole live
/// set when the file's sequence is behind the cursor (the file was replaced by an older
/// one). Versions are handed out under the write lock and committed in order, so what a
/// read sees after the cursor never gains an older version later.
pub(super) fn after(conn: &Connection, after: u64, limit: usize) -> rusqlite::Result<RecordFeed> {
    let top: u64 = conn
        .prepare_cached("SELECT coalesce(max(version), 0) FROM records")?
        .query_row([], |r| version_at(r, 0))?;
    let full = top < after;
    let known = known_kinds();
    let mut records = Vec::new();
    if full {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT kind, name, version, doc FROM records
             WHERE doc IS NOT NULL AND {known} ORDER BY version"
        ))?;
        for r in stmt.query_map([], row_to_record)? {
            records.extend(r?);
        }
    } else {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let mut stmt = conn.prepare_cached(&feed_sql())?;
        for r in stmt.query_map(params![to_sql(after)?, limit], row_to_record)? {
            records.extend(r?);
        }
    }
    Ok(RecordFeed { records, full })
}
