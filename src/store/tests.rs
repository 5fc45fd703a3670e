//! The store contract, exercised on the embedded SQLite store.

use super::sqlite::SqliteStore;
use super::*;
use crate::config::StoreSync;
use std::sync::Arc;

fn record(kind: TokenKind, jti: &str, grant: &str, expires_at: Option<i64>) -> TokenRecord {
    TokenRecord {
        kind,
        jti: jti.into(),
        grant_id: grant.into(),
        client_id: "app".into(),
        family: Family::Credential,
        username: Some("alice".into()),
        scope: "a b".into(),
        audiences: vec!["orders".into(), "billing".into()],
        format: Format::Opaque,
        issued_at: 100,
        expires_at,
        used_at: None,
        revoked: false,
    }
}

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("t.db"), StoreSync::Full).unwrap()
}

#[tokio::test]
async fn tokens_round_trip_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let rec = record(TokenKind::Access, "j1", "g1", Some(1_000));
    {
        let s = open(&dir);
        s.insert(vec![(digest("tok-1"), rec.clone())])
            .await
            .unwrap();
        assert_eq!(s.get(&digest("tok-1")).await.unwrap(), Some(rec.clone()));
        assert_eq!(s.get(&digest("tok-2")).await.unwrap(), None);
    }
    let s = open(&dir);
    assert_eq!(s.get(&digest("tok-1")).await.unwrap(), Some(rec));
    // A digest is stored at most once.
    assert!(
        s.insert(vec![(
            digest("tok-1"),
            record(TokenKind::Access, "x", "g", None)
        )])
        .await
        .is_err()
    );
}

#[tokio::test]
async fn rotation_grace_and_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let r0 = record(TokenKind::Refresh, "r0", "g1", Some(10_000));
    let a0 = record(TokenKind::Access, "a0", "g1", Some(10_000));
    s.insert(vec![(digest("r0"), r0), (digest("a0"), a0)])
        .await
        .unwrap();

    let next = |n: &str| vec![(digest(n), record(TokenKind::Refresh, n, "g1", Some(10_000)))];
    assert_eq!(
        s.rotate(digest("r0"), next("r1"), 200, 10, Some(5_000))
            .await
            .unwrap(),
        Rotation::Rotated
    );
    assert_eq!(
        s.get(&digest("r0")).await.unwrap().unwrap().used_at,
        Some(200)
    );
    // A concurrent refresh within the grace period gets its own successor.
    assert_eq!(
        s.rotate(digest("r0"), next("r1b"), 205, 10, Some(5_000))
            .await
            .unwrap(),
        Rotation::WithinGrace
    );
    assert!(s.get(&digest("r1b")).await.unwrap().is_some());
    // After the grace period the reuse revokes the whole grant.
    assert_eq!(
        s.rotate(digest("r0"), next("r2"), 300, 10, Some(5_000))
            .await
            .unwrap(),
        Rotation::Reused {
            grant_id: "g1".into()
        }
    );
    assert!(
        s.get(&digest("r2")).await.unwrap().is_none(),
        "nothing stored on reuse"
    );
    for t in ["r1", "r1b", "a0"] {
        assert!(s.get(&digest(t)).await.unwrap().unwrap().revoked, "{t}");
    }
    assert_eq!(
        s.rotate(digest("r1"), next("r3"), 301, 10, None)
            .await
            .unwrap(),
        Rotation::Inactive
    );
    let revs = s.revocations_since(0, 300).await.unwrap();
    assert_eq!(revs.len(), 1);
    assert_eq!(revs[0].target, RevocationTarget::Grant("g1".into()));
    assert_eq!(revs[0].until, Some(5_000));
}

#[tokio::test]
async fn expired_or_wrong_kind_tokens_do_not_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.insert(vec![
        (
            digest("old"),
            record(TokenKind::Refresh, "o", "g", Some(50)),
        ),
        (
            digest("acc"),
            record(TokenKind::Access, "a", "g", Some(10_000)),
        ),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.rotate(digest("old"), vec![], 60, 10, None).await.unwrap(),
        Rotation::Inactive
    );
    assert_eq!(
        s.rotate(digest("acc"), vec![], 60, 10, None).await.unwrap(),
        Rotation::Inactive
    );
    assert_eq!(
        s.rotate(digest("none"), vec![], 60, 10, None)
            .await
            .unwrap(),
        Rotation::Inactive
    );
}

#[tokio::test]
async fn revocations_are_listed_in_order_and_purged_when_expired() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.insert(vec![(
        digest("t"),
        record(TokenKind::Access, "jt", "g", Some(500)),
    )])
    .await
    .unwrap();
    s.revoke(Revoke::Token {
        jti: "jt".into(),
        digest: Some(digest("t")),
        until: Some(500),
    })
    .await
    .unwrap();
    s.revoke(Revoke::Token {
        jti: "jwt-1".into(),
        digest: None,
        until: None,
    })
    .await
    .unwrap();
    assert!(s.get(&digest("t")).await.unwrap().unwrap().revoked);
    let all = s.revocations_since(0, 100).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].seq < all[1].seq);
    assert_eq!(s.revocations_since(all[0].seq, 100).await.unwrap().len(), 1);
    // After 500 the first revocation and the token itself are gone; the forever one stays.
    assert_eq!(s.purge(501).await.unwrap(), 2);
    let left = s.revocations_since(0, 501).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].target, RevocationTarget::Jti("jwt-1".into()));
    assert!(s.get(&digest("t")).await.unwrap().is_none());
}

#[tokio::test]
async fn keys_are_inserted_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    assert_eq!(s.key("k").await.unwrap(), None);
    assert_eq!(s.key_or_insert("k", vec![1, 2]).await.unwrap(), vec![1, 2]);
    assert_eq!(
        s.key_or_insert("k", vec![3]).await.unwrap(),
        vec![1, 2],
        "the first key wins"
    );
    assert_eq!(s.key("k").await.unwrap(), Some(vec![1, 2]));
}

#[tokio::test]
async fn concurrent_writes_are_grouped_and_all_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    let mut tasks = Vec::new();
    for i in 0..300 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("t{i}");
            s.insert(vec![(
                digest(&name),
                record(TokenKind::Access, &name, "g", None),
            )])
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    for i in 0..300 {
        assert!(s.get(&digest(&format!("t{i}"))).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn two_openers_share_one_file() {
    // What happens during a graceful upgrade: the old and the new process both have it open.
    let dir = tempfile::tempdir().unwrap();
    let a = open(&dir);
    let b = open(&dir);
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
    assert_eq!(b.revocations_since(0, 0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_checkpointer_copies_the_log_into_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let s = open(&dir);
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::metadata(&db).unwrap().len() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "database file still {before} bytes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(s.get(&digest("j499")).await.unwrap().is_some());
}
