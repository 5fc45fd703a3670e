//! The store contract, run against both backends: the embedded SQLite store, and a real
//! `redis-server` process started for each test on a free port.

use super::redis::RedisStore;
use super::sqlite::SqliteStore;
use super::*;
use crate::config::{RedisSettings, StoreSync};
use crate::domain::clock::unix_now;
use crate::domain::secret::Secret;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

fn open_sqlite(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("t.db"), StoreSync::Full).unwrap()
}

/// A `redis-server` of the test's own, on a free loopback port, killed when dropped.
pub(crate) struct RedisServer {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub(crate) fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/install-deps.sh --test)");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read as _, Write as _};
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    pub(crate) fn settings(&self, prefix: &str) -> RedisSettings {
        let url = format!("redis://127.0.0.1:{}/0", self.port);
        RedisSettings {
            url_for_logs: url.clone(),
            url: Secret::new(url),
            prefix: prefix.into(),
            timeout: Duration::from_millis(500),
            feed_max_len: 100_000,
        }
    }

    pub(crate) fn store(&self, prefix: &str) -> RedisStore {
        RedisStore::open(&self.settings(prefix)).unwrap()
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run one contract check against a fresh store of each backend.
macro_rules! contract {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(Arc::new(open_sqlite(&dir))).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let server = RedisServer::start();
                super::$name(Arc::new(server.store("t:"))).await;
            }
        }
    };
}

contract!(tokens_round_trip);
async fn tokens_round_trip(s: Arc<dyn Store>) {
    let rec = record(TokenKind::Access, "j1", "g1", Some(unix_now() + 1_000));
    s.insert(vec![(digest("tok-1"), rec.clone())])
        .await
        .unwrap();
    assert_eq!(s.get(&digest("tok-1")).await.unwrap(), Some(rec.clone()));
    assert_eq!(s.get(&digest("tok-2")).await.unwrap(), None);
    // A digest is stored at most once.
    assert!(
        s.insert(vec![(
            digest("tok-1"),
            record(TokenKind::Access, "x", "g", None)
        )])
        .await
        .is_err()
    );
    // Immortal tokens, users and families round-trip too.
    let mut other = record(TokenKind::Refresh, "j2", "g2", None);
    other.username = None;
    other.family = Family::Auth;
    other.format = Format::Jwt;
    s.insert(vec![(digest("tok-3"), other.clone())])
        .await
        .unwrap();
    assert_eq!(s.get(&digest("tok-3")).await.unwrap(), Some(other));
    s.ping().await.unwrap();
}

contract!(rotation_grace_and_reuse);
async fn rotation_grace_and_reuse(s: Arc<dyn Store>) {
    let exp = unix_now() + 10_000;
    let now = unix_now();
    let r0 = record(TokenKind::Refresh, "r0", "g1", Some(exp));
    let a0 = record(TokenKind::Access, "a0", "g1", Some(exp));
    s.insert(vec![(digest("r0"), r0), (digest("a0"), a0)])
        .await
        .unwrap();
    let start = s
        .revocations(&Cursor::default(), Duration::ZERO, now)
        .await
        .unwrap();
    assert!(start.full && start.revocations.is_empty());

    let next = |n: &str| vec![(digest(n), record(TokenKind::Refresh, n, "g1", Some(exp)))];
    assert_eq!(
        s.rotate(digest("r0"), next("r1"), now, 10, Some(exp))
            .await
            .unwrap(),
        Rotation::Rotated
    );
    assert_eq!(
        s.get(&digest("r0")).await.unwrap().unwrap().used_at,
        Some(now)
    );
    // A concurrent refresh within the grace period gets its own successor.
    assert_eq!(
        s.rotate(digest("r0"), next("r1b"), now + 5, 10, Some(exp))
            .await
            .unwrap(),
        Rotation::WithinGrace
    );
    assert!(s.get(&digest("r1b")).await.unwrap().is_some());
    // After the grace period the reuse revokes the whole grant.
    assert_eq!(
        s.rotate(digest("r0"), next("r2"), now + 100, 10, Some(exp))
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
        s.rotate(digest("r1"), next("r3"), now + 101, 10, None)
            .await
            .unwrap(),
        Rotation::Inactive
    );
    let feed = s
        .revocations(&start.next, Duration::from_millis(100), now)
        .await
        .unwrap();
    assert_eq!(
        feed.revocations,
        vec![Revocation {
            target: RevocationTarget::Grant("g1".into()),
            until: Some(exp)
        }]
    );
    assert!(!feed.full);
}

contract!(concurrent_refreshes_rotate_once);
async fn concurrent_refreshes_rotate_once(s: Arc<dyn Store>) {
    let exp = unix_now() + 10_000;
    let now = unix_now();
    for round in 0..20 {
        let used = format!("used-{round}");
        s.insert(vec![(
            digest(&used),
            record(TokenKind::Refresh, &used, &used, Some(exp)),
        )])
        .await
        .unwrap();
        let mut tasks = Vec::new();
        for side in 0..2 {
            let s = s.clone();
            let used = used.clone();
            tasks.push(tokio::spawn(async move {
                let succ = format!("{used}-next-{side}");
                s.rotate(
                    digest(&used),
                    vec![(
                        digest(&succ),
                        record(TokenKind::Refresh, &succ, &used, Some(exp)),
                    )],
                    now,
                    10,
                    Some(exp),
                )
                .await
                .unwrap()
            }));
        }
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }
        outcomes.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(
            outcomes,
            vec![Rotation::Rotated, Rotation::WithinGrace],
            "round {round}"
        );
    }
}

contract!(expired_or_wrong_kind_tokens_do_not_rotate);
async fn expired_or_wrong_kind_tokens_do_not_rotate(s: Arc<dyn Store>) {
    let now = unix_now();
    s.insert(vec![
        (
            digest("old"),
            record(TokenKind::Refresh, "o", "g", Some(now + 50)),
        ),
        (
            digest("acc"),
            record(TokenKind::Access, "a", "g", Some(now + 10_000)),
        ),
    ])
    .await
    .unwrap();
    assert_eq!(
        s.rotate(digest("old"), vec![], now + 60, 10, None)
            .await
            .unwrap(),
        Rotation::Inactive
    );
    assert_eq!(
        s.rotate(digest("acc"), vec![], now, 10, None)
            .await
            .unwrap(),
        Rotation::Inactive
    );
    assert_eq!(
        s.rotate(digest("none"), vec![], now, 10, None)
            .await
            .unwrap(),
        Rotation::Inactive
    );
}

contract!(revocations_feed_and_purge);
async fn revocations_feed_and_purge(s: Arc<dyn Store>) {
    let now = unix_now();
    s.insert(vec![(
        digest("t"),
        record(TokenKind::Access, "jt", "g", Some(now + 500)),
    )])
    .await
    .unwrap();
    s.revoke(Revoke::Token {
        jti: "jt".into(),
        digest: Some(digest("t")),
        until: Some(now + 500),
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
    let all = s
        .revocations(&Cursor::default(), Duration::ZERO, now)
        .await
        .unwrap();
    assert!(all.full);
    assert_eq!(all.revocations.len(), 2);
    // Nothing new: the read waits (briefly) and returns nothing, at the same point.
    let none = s
        .revocations(&all.next, Duration::from_millis(50), now)
        .await
        .unwrap();
    assert!(none.revocations.is_empty());
    s.revoke(Revoke::Client {
        client_id: "app".into(),
        issued_before: now,
        until: Some(now + 600),
    })
    .await
    .unwrap();
    s.revoke(Revoke::User {
        username: "alice".into(),
        issued_before: now,
        until: None,
    })
    .await
    .unwrap();
    let more = s
        .revocations(&none.next, Duration::from_millis(100), now)
        .await
        .unwrap();
    assert_eq!(
        more.revocations,
        vec![
            Revocation {
                target: RevocationTarget::Client {
                    client_id: "app".into(),
                    issued_before: now
                },
                until: Some(now + 600)
            },
            Revocation {
                target: RevocationTarget::User {
                    username: "alice".into(),
                    issued_before: now
                },
                until: None
            },
        ]
    );
    // After `now + 500` the first revocation is forgotten; the forever ones stay.
    s.purge(now + 501).await.unwrap();
    let left = s
        .revocations(&Cursor::default(), Duration::ZERO, now + 501)
        .await
        .unwrap();
    assert_eq!(left.revocations.len(), 3, "{:?}", left.revocations);
    assert!(
        !left
            .revocations
            .iter()
            .any(|r| r.target == RevocationTarget::Jti("jt".into()))
    );
}

contract!(key_set_changes_only_from_the_version_read);
async fn key_set_changes_only_from_the_version_read(s: Arc<dyn Store>) {
    assert_eq!(s.key_set().await.unwrap(), None);
    assert!(s.replace_key_set(None, b"one".to_vec()).await.unwrap());
    assert!(
        !s.replace_key_set(None, b"two".to_vec()).await.unwrap(),
        "the first writer wins"
    );
    let v1 = s.key_set().await.unwrap().unwrap();
    assert_eq!((v1.version, v1.doc.as_slice()), (1, &b"one"[..]));
    assert!(!s.replace_key_set(Some(7), b"x".to_vec()).await.unwrap());
    assert!(s.replace_key_set(Some(1), b"three".to_vec()).await.unwrap());
    let v2 = s.key_set().await.unwrap().unwrap();
    assert_eq!((v2.version, v2.doc.as_slice()), (2, &b"three"[..]));
}

contract!(ephemeral_records);
async fn ephemeral_records(s: Arc<dyn Store>) {
    let now = unix_now();
    let k = digest("code-1");
    s.put_ephemeral(Ephemeral::AuthCode, k, b"v1".to_vec(), now + 60)
        .await
        .unwrap();
    assert_eq!(
        s.get_ephemeral(Ephemeral::AuthCode, &k, now).await.unwrap(),
        Some(b"v1".to_vec())
    );
    // Namespaces are apart.
    assert_eq!(
        s.get_ephemeral(Ephemeral::Session, &k, now).await.unwrap(),
        None
    );
    assert_eq!(
        s.consume_ephemeral(Ephemeral::AuthCode, &k, now)
            .await
            .unwrap(),
        Consumed::First(b"v1".to_vec())
    );
    assert_eq!(
        s.consume_ephemeral(Ephemeral::AuthCode, &k, now)
            .await
            .unwrap(),
        Consumed::Again(b"v1".to_vec())
    );
    assert_eq!(
        s.consume_ephemeral(Ephemeral::AuthCode, &digest("other"), now)
            .await
            .unwrap(),
        Consumed::Missing
    );
    // Exactly one of many concurrent consumers is first.
    let c = digest("code-2");
    s.put_ephemeral(Ephemeral::AuthCode, c, b"v2".to_vec(), now + 60)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.consume_ephemeral(Ephemeral::AuthCode, &c, now)
                .await
                .unwrap()
        }));
    }
    let mut firsts = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Consumed::First(_)) {
            firsts += 1;
        }
    }
    assert_eq!(firsts, 1);
    // Claims: only the first holds the key.
    let j = digest("jti");
    assert!(
        s.claim_ephemeral(Ephemeral::UsedSubjectToken, j, vec![], now + 60)
            .await
            .unwrap()
    );
    assert!(
        !s.claim_ephemeral(Ephemeral::UsedSubjectToken, j, vec![], now + 60)
            .await
            .unwrap()
    );
    s.delete_ephemeral(Ephemeral::AuthCode, &k).await.unwrap();
    assert_eq!(
        s.get_ephemeral(Ephemeral::AuthCode, &k, now).await.unwrap(),
        None
    );
    // Expired records are gone.
    let e = digest("expired");
    s.put_ephemeral(Ephemeral::Session, e, b"x".to_vec(), now - 1)
        .await
        .unwrap();
    assert_eq!(
        s.get_ephemeral(Ephemeral::Session, &e, now).await.unwrap(),
        None
    );
    assert_eq!(
        s.consume_ephemeral(Ephemeral::Session, &e, now)
            .await
            .unwrap(),
        Consumed::Missing
    );
}

contract!(concurrent_writes_are_all_acknowledged);
async fn concurrent_writes_are_all_acknowledged(s: Arc<dyn Store>) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_keys_expire_with_their_tokens() {
    let server = RedisServer::start();
    let s = server.store("exp:");
    let now = unix_now();
    s.insert(vec![
        (
            digest("short"),
            record(TokenKind::Access, "s", "gx", Some(now + 100)),
        ),
        (
            digest("long"),
            record(TokenKind::Refresh, "l", "gx", Some(now + 5_000)),
        ),
    ])
    .await
    .unwrap();
    let ttl = |key: String| server.cli(&["PTTL", &key]).parse::<i64>().unwrap();
    let short = ttl(format!("exp:t:{}", wire_hex(&digest("short"))));
    assert!((90_000..=100_000).contains(&short), "{short}");
    // The grant's set lives as long as its longest-lived token.
    let grant = ttl("exp:g:gx".into());
    assert!((4_990_000..=5_000_000).contains(&grant), "{grant}");
    // An immortal token keeps its grant's set for ever.
    s.insert(vec![(
        digest("forever"),
        record(TokenKind::Access, "f", "gx", None),
    )])
    .await
    .unwrap();
    assert_eq!(ttl("exp:g:gx".into()), -1);
    assert_eq!(ttl(format!("exp:t:{}", wire_hex(&digest("forever")))), -1);
}

fn wire_hex(d: &Digest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_feed_reads_the_whole_set_after_a_gap_or_a_loss() {
    let server = RedisServer::start();
    let s = server.store("gap:");
    let now = unix_now();
    let first = s
        .revocations(&Cursor::default(), Duration::ZERO, now)
        .await
        .unwrap();
    assert!(first.full);
    for i in 0..5 {
        s.revoke(Revoke::Token {
            jti: format!("j{i}"),
            digest: None,
            until: None,
        })
        .await
        .unwrap();
    }
    // Another node, following from the start, sees all five in order.
    let other = server.store("gap:");
    let seen = other
        .revocations(&first.next, Duration::from_millis(100), now)
        .await
        .unwrap();
    assert!(!seen.full);
    assert_eq!(seen.revocations.len(), 5);
    // Entries trimmed before a node read them: it must read the whole set.
    server.cli(&["XTRIM", "gap:feed", "MAXLEN", "0"]);
    let late = server.store("gap:");
    let feed = late
        .revocations(&first.next, Duration::from_millis(100), now)
        .await
        .unwrap();
    assert!(feed.full);
    assert_eq!(feed.revocations.len(), 5);
    // Redis lost everything (restarted without persistence): again the whole (now empty)
    // set, not a wait for stream ids that will never come.
    server.cli(&["FLUSHALL"]);
    let after_loss = server.store("gap:");
    let feed = after_loss
        .revocations(&seen.next, Duration::from_millis(100), now)
        .await
        .unwrap();
    assert!(feed.full);
    assert!(feed.revocations.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_calls_fail_in_time_when_the_server_hangs_or_is_gone() {
    let mut server = RedisServer::start();
    let s = server.store("down:");
    s.ping().await.unwrap();
    let pid = server.child.id().to_string();
    let signal = |sig: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    // The calls return (with errors): the store's own timeouts answer, the connection does
    // not hang. The outer bound only keeps a regression from hanging the test run.
    let bound = Duration::from_secs(60);
    let get = tokio::time::timeout(bound, s.get(&digest("x"))).await;
    assert!(matches!(get, Ok(Err(_))), "{get:?}");
    let feed = tokio::time::timeout(
        bound,
        s.revocations(&Cursor(Some("0-0".into())), Duration::from_millis(100), 0),
    )
    .await;
    assert!(matches!(feed, Ok(Err(_))), "{feed:?}");
    signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.ping().await.is_err() {
        assert!(Instant::now() < deadline, "no recovery after SIGCONT");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = server.child.kill();
    let _ = server.child.wait();
    assert!(s.ping().await.is_err());
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
