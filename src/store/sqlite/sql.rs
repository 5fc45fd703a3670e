//! The statements of the embedded store: token rows to records and back, revocations, the
//! key set and short-lived records, each run inside the caller's connection or the writer's
//! transaction.

use super::super::{
    Consumed, Digest, Ephemeral, Revocation, RevocationTarget, Revoke, Rotation, TokenKind,
    TokenRecord,
};
use super::index::DigestIndex;
use crate::domain::ids::{ClientId, GrantId, Jti};
use crate::domain::oauth::{Family, Format};
use rusqlite::{Connection, OptionalExtension, params};

/// Revocation kinds in the `revocations` table.
const REV_JTI: i64 = 1;
const REV_GRANT: i64 = 2;
const REV_CLIENT: i64 = 3;
const REV_USER: i64 = 4;

pub(super) fn family_code(f: Family) -> i64 {
    match f {
        Family::Auth => 1,
        Family::Credential => 2,
    }
}

pub(super) fn format_code(f: Format) -> i64 {
    match f {
        Format::Jwt => 1,
        Format::Opaque => 2,
    }
}

pub(super) fn insert(
    tx: &Connection,
    index: &DigestIndex,
    tokens: &[(Digest, TokenRecord)],
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO tokens (digest, kind, jti, grant_id, client_id, family, username, scope,
            audience, format, issued_at, expires_at, used_at, revoked, cnf)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
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
            t.jti.as_str(),
            t.grant_id.as_str(),
            t.client_id.as_str(),
            family_code(t.family),
            t.username,
            t.scope,
            t.audiences.join(" "),
            format_code(t.format),
            t.issued_at,
            t.expires_at,
            t.used_at,
            t.revoked,
            t.cnf.map(|c| c.to_stored()),
        ])?;
        index.add(digest, tx.last_insert_rowid());
    }
    Ok(())
}

pub(super) const SELECT_TOKEN: &str =
    "SELECT kind, jti, grant_id, client_id, family, username, scope, audience,
    format, issued_at, expires_at, used_at, revoked, digest, cnf FROM tokens WHERE id = ?1";

pub(super) fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    let audience: String = row.get(7)?;
    Ok(TokenRecord {
        kind: if row.get::<_, i64>(0)? == 2 {
            TokenKind::Refresh
        } else {
            TokenKind::Access
        },
        jti: Jti::new(row.get::<_, String>(1)?),
        grant_id: GrantId::new(row.get::<_, String>(2)?),
        client_id: ClientId::new(row.get::<_, String>(3)?),
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
        cnf: row
            .get::<_, Option<String>>(14)?
            .as_deref()
            .and_then(crate::domain::cnf::Confirmation::from_stored),
    })
}

/// The row holding `digest` and its record, through the index: each candidate row is
/// checked against the full digest.
pub(super) fn find(
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
pub(super) fn get(
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
pub(super) fn rotate(
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

pub(super) fn revoke(tx: &Connection, index: &DigestIndex, what: &Revoke) -> rusqlite::Result<()> {
    let (kind, id, until, before) = match what {
        Revoke::Token { jti, digest, until } => {
            if let Some(d) = digest
                && let Some((row, _)) = find(tx, index, d)?
            {
                tx.prepare_cached("UPDATE tokens SET revoked = 1 WHERE id = ?1")?
                    .execute(params![row])?;
            }
            (REV_JTI, jti.as_str(), until, None)
        }
        Revoke::Grant { grant_id, until } => {
            tx.prepare_cached("UPDATE tokens SET revoked = 1 WHERE grant_id = ?1")?
                .execute(params![grant_id.as_str()])?;
            (REV_GRANT, grant_id.as_str(), until, None)
        }
        // Stored tokens of a client or user are refused through the revocation set, which
        // every reader of a token record consults; no scan of the token table is needed.
        Revoke::Client {
            client_id,
            issued_before,
            until,
        } => (REV_CLIENT, client_id.as_str(), until, Some(*issued_before)),
        Revoke::User {
            username,
            issued_before,
            until,
        } => (REV_USER, username.as_str(), until, Some(*issued_before)),
    };
    tx.prepare_cached(
        "INSERT INTO revocations (kind, id, until, issued_before) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![kind, id, until, before])?;
    Ok(())
}

/// How many rows went, and the deleted tokens for the index to forget once committed.
pub(super) fn purge(tx: &Connection, now: i64) -> rusqlite::Result<(u64, Vec<(Digest, i64)>)> {
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

pub(super) fn row_to_revocation(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(i64, Option<Revocation>)> {
    let seq: i64 = r.get(0)?;
    let id: String = r.get(2)?;
    let before: Option<i64> = r.get(4)?;
    let target = match (r.get::<_, i64>(1)?, before) {
        (REV_JTI, _) => Some(RevocationTarget::Jti(Jti::new(id))),
        (REV_GRANT, _) => Some(RevocationTarget::Grant(GrantId::new(id))),
        (REV_CLIENT, Some(issued_before)) => Some(RevocationTarget::Client {
            client_id: ClientId::new(id),
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

pub(super) fn revocations_after(
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

pub(super) fn replace_key_set(
    tx: &Connection,
    expected: Option<u64>,
    doc: &[u8],
) -> rusqlite::Result<bool> {
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

pub(super) fn consume_ephemeral(
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
