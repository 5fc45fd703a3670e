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
        cnf: None,
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

mod records;
mod redis_only;
mod sqlite_only;
