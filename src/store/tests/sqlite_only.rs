//! What only the embedded store does: reopening, two processes on one file, schema
//! migrations, the checkpointer.

use super::*;

#[tokio::test]
async fn sqlite_tokens_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let rec = record(TokenKind::Access, "j1", "g1", Some(1_000));
    {
        let s = open_sqlite(&dir);
        s.insert(vec![(digest("tok-1"), rec.clone())])
            .await
            .unwrap();
    }
    let s = open_sqlite(&dir);
    assert_eq!(s.get(&digest("tok-1")).await.unwrap(), Some(rec));
}

#[tokio::test]
async fn sqlite_two_openers_share_one_file() {
    // What happens during a graceful upgrade: the old and the new process both have it open.
    let dir = tempfile::tempdir().unwrap();
    let a = open_sqlite(&dir);
    let b = open_sqlite(&dir);
    let start = b
        .revocations(&Cursor::default(), Duration::ZERO, 0)
        .await
        .unwrap();
    // b's feeds find nothing, twice: the second look reads only the file's data version.
    for _ in 0..2 {
        let idle = b.revocations(&start.next, Duration::ZERO, 0).await.unwrap();
        assert!(idle.revocations.is_empty());
        let idle = b.records_after(0, 10, Duration::ZERO).await.unwrap();
        assert!(idle.records.is_empty());
    }
    a.insert(vec![(
        digest("from-a"),
        record(TokenKind::Access, "a", "g", None),
    )])
    .await
    .unwrap();
    b.insert(vec![(
        digest("from-b"),
        record(TokenKind::Access, "b", "g", None),
    )])
    .await
    .unwrap();
    assert!(b.get(&digest("from-a")).await.unwrap().is_some());
    assert!(a.get(&digest("from-b")).await.unwrap().is_some());
    a.revoke(Revoke::Grant {
        grant_id: "g".into(),
        until: None,
    })
    .await
    .unwrap();
    let seen = b
        .revocations(&start.next, Duration::from_millis(10), 0)
        .await
        .unwrap();
    assert_eq!(seen.revocations.len(), 1);
    let v = a
        .put_record(RecordKind::Credential, "c", None, b"c".to_vec())
        .await
        .unwrap();
    assert!(matches!(v, Written::Done { .. }));
    let feed = b
        .records_after(0, 10, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(feed.records.len(), 1);
}

#[tokio::test]
async fn sqlite_migrates_a_first_version_database() {
    // The schema of the previous release, with a revocation and a generated key in it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE revocations (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL,
                 id TEXT NOT NULL, until INTEGER);
             INSERT INTO revocations (kind, id, until) VALUES (2, 'old-grant', NULL);
             CREATE TABLE signing_keys (name TEXT PRIMARY KEY, der BLOB NOT NULL,
                 created_at INTEGER NOT NULL) WITHOUT ROWID;
             INSERT INTO signing_keys VALUES ('signing-es256', x'0102', 0);",
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path, StoreSync::Full).unwrap();
    let feed = s
        .revocations(&Cursor::default(), Duration::ZERO, 0)
        .await
        .unwrap();
    assert_eq!(
        feed.revocations,
        vec![Revocation {
            target: RevocationTarget::Grant("old-grant".into()),
            until: None
        }]
    );
    assert_eq!(
        s.legacy_key("signing-es256").await.unwrap(),
        Some(vec![1, 2])
    );
    s.revoke(Revoke::User {
        username: "bob".into(),
        issued_before: 5,
        until: None,
    })
    .await
    .unwrap();
    // Opening again is a no-op.
    drop(s);
    assert!(SqliteStore::open(&path, StoreSync::Full).is_ok());
}

#[tokio::test]
async fn sqlite_checkpointer_copies_the_log_into_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let s = open_sqlite(&dir);
    let before = std::fs::metadata(&db).unwrap().len();
    let tokens = (0..500)
        .map(|i| {
            let jti = format!("j{i}");
            (digest(&jti), record(TokenKind::Access, &jti, &jti, None))
        })
        .collect();
    s.insert(tokens).await.unwrap();
    // Far below the writer's own checkpoint threshold: only the checkpointer thread moves
    // these pages from the log into the database file.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&db).unwrap().len() <= before {
        assert!(
            Instant::now() < deadline,
            "database file still {before} bytes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.get(&digest("j499")).await.unwrap().is_some());
}

/// The token table of schema version 2: keyed by digest.
const TOKENS_V2: &str = "
CREATE TABLE tokens (
    digest BLOB PRIMARY KEY, kind INTEGER NOT NULL, jti TEXT NOT NULL,
    grant_id TEXT NOT NULL, client_id TEXT NOT NULL, family INTEGER NOT NULL,
    username TEXT, scope TEXT NOT NULL, audience TEXT NOT NULL, format INTEGER NOT NULL,
    issued_at INTEGER NOT NULL, expires_at INTEGER, used_at INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX tokens_by_grant ON tokens(grant_id);
CREATE INDEX tokens_by_expiry ON tokens(expires_at) WHERE expires_at IS NOT NULL;
PRAGMA user_version = 2;";

#[tokio::test]
async fn sqlite_migrates_tokens_keyed_by_digest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let now = unix_now();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(TOKENS_V2).unwrap();
        let mut insert = c
            .prepare(
                "INSERT INTO tokens VALUES (?1, ?2, ?3, 'g1', 'app', 2, 'alice', 'a b',
                 'orders billing', 2, ?4, ?5, NULL, 0)",
            )
            .unwrap();
        // Written out of issue order: the migration puts them in it.
        insert
            .execute(rusqlite::params![
                &digest("r0")[..],
                2,
                "r0",
                100,
                now + 1_000
            ])
            .unwrap();
        insert
            .execute(rusqlite::params![
                &digest("old")[..],
                1,
                "old",
                50,
                now - 10
            ])
            .unwrap();
    }
    let s = SqliteStore::open(&path, StoreSync::Full).unwrap();
    let mut r0 = record(TokenKind::Refresh, "r0", "g1", Some(now + 1_000));
    assert_eq!(s.get(&digest("r0")).await.unwrap(), Some(r0.clone()));
    let next = record(TokenKind::Refresh, "r1", "g1", Some(now + 1_000));
    let rotated = s
        .rotate(
            digest("r0"),
            vec![(digest("r1"), next.clone())],
            now,
            5,
            None,
        )
        .await
        .unwrap();
    assert_eq!(rotated, Rotation::Rotated);
    r0.used_at = Some(now);
    assert_eq!(s.get(&digest("r0")).await.unwrap(), Some(r0));
    assert_eq!(s.get(&digest("r1")).await.unwrap(), Some(next));
    assert_eq!(s.purge(now).await.unwrap(), 1);
    assert_eq!(s.get(&digest("old")).await.unwrap(), None);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        let ids: Vec<(i64, String)> = c
            .prepare("SELECT id, jti FROM tokens ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, vec![(2, "r0".to_string()), (3, "r1".to_string())]);
        let version: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 3);
    }
    // Opening again is a no-op, and the index is rebuilt from the table.
    drop(s);
    let s = SqliteStore::open(&path, StoreSync::Full).unwrap();
    assert!(s.get(&digest("r1")).await.unwrap().is_some());
}

#[tokio::test]
async fn sqlite_writer_sees_tokens_another_process_stored() {
    // The new process rotates a refresh token the old one issued after both had opened.
    let dir = tempfile::tempdir().unwrap();
    let old = open_sqlite(&dir);
    let new = open_sqlite(&dir);
    let now = unix_now();
    // Both writers running before the token exists.
    old.insert(vec![(
        digest("warm-old"),
        record(TokenKind::Access, "w1", "w", None),
    )])
    .await
    .unwrap();
    new.insert(vec![(
        digest("warm-new"),
        record(TokenKind::Access, "w2", "w", None),
    )])
    .await
    .unwrap();
    let r0 = record(TokenKind::Refresh, "r0", "g1", Some(now + 1_000));
    old.insert(vec![(digest("r0"), r0)]).await.unwrap();
    let r1 = record(TokenKind::Refresh, "r1", "g1", Some(now + 1_000));
    let rotated = new
        .rotate(digest("r0"), vec![(digest("r1"), r1)], now, 5, None)
        .await
        .unwrap();
    assert_eq!(rotated, Rotation::Rotated);
    // Stored once only, whichever process is asked.
    let again = record(TokenKind::Access, "x", "g", None);
    assert!(new.insert(vec![(digest("r0"), again)]).await.is_err());
    assert!(old.get(&digest("r1")).await.unwrap().is_some());
    // A token the other process purged is gone here too.
    let short = record(TokenKind::Access, "s", "g2", Some(now - 1));
    new.insert(vec![(digest("short"), short)]).await.unwrap();
    assert!(old.get(&digest("short")).await.unwrap().is_some());
    assert_eq!(old.purge(now).await.unwrap(), 1);
    assert_eq!(new.get(&digest("short")).await.unwrap(), None);
}
