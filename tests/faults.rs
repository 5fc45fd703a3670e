//! Faults: an upstream that resets, a state directory that becomes unwritable or full, and
//! SIGTERM under load. The gateway answers within its timeouts, degrades to what still
//! works, and loses nothing it acknowledged.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn catalog(up: &Upstream, extra_api: &str) -> String {
    format!(
        r#"
apis:
  - {{ name: orders, prefix: /orders, strip_prefix: true, upstream: {{ servers: ["{}"] }}, auth: jwt }}
{extra_api}
policies:
  - name: legacy
    kind: oauth2
    apis: [orders]
    client_id: legacy-key
    client_secret_hash: "{}"
credentials:
  - {{ client_id: reader, client_secret_hash: "{}", acl: [orders], roles: [orders:read] }}
"#,
        up.addr,
        cheap_hash("legacy-secret"),
        cheap_hash("reader-secret")
    )
}

fn client() -> reqwest::Client {
    // A hang would surface as this timeout and fail the test.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn token(gw: &Gateway, path: &str, id: &str, secret: &str) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
}

async fn call(gw: &Gateway, path: &str, t: &str) -> u16 {
    client()
        .get(gw.url(path))
        .bearer_auth(t)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// An upstream that reads a request and then resets the connection, after `prefix` bytes
/// of response (none: before any).
async fn resetting_upstream(prefix: &'static [u8]) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(prefix).await;
                let _ = s.set_zero_linger();
                drop(s); // RST
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_upstream_reset_is_502_and_other_apis_keep_serving() {
    let up = start_upstream().await;
    let early = resetting_upstream(b"").await;
    let midway =
        resetting_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial").await;
    let extra = format!(
        "  - {{ name: early, prefix: /early, upstream: {{ servers: [\"{early}\"] }}, auth: none }}\n  - {{ name: midway, prefix: /midway, upstream: {{ servers: [\"{midway}\"] }}, auth: none }}"
    );
    let gw = Gateway::start(GatewaySpec::new(catalog(&up, &extra)), &TestKey::generate()).await;
    let r = client().get(gw.url("/early/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "bad_gateway");
    // Reset after the response began: the client sees the response cut short, not a hang.
    match client().get(gw.url("/midway/x")).send().await {
        Ok(r) => assert!(
            r.bytes().await.is_err(),
            "a truncated body must not look complete"
        ),
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    let t = token(&gw, "/credential/jwt", "reader", "reader-secret").await;
    let v: Value = t.json().await.unwrap();
    assert_eq!(
        call(&gw, "/orders/x", v["access_token"].as_str().unwrap()).await,
        200
    );
}

/// Runs `chattr` on the store's files; undoes it when dropped.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(state: &Path) -> Self {
        // Not the -shm file: SQLite maps it into memory, and a write to a mapping of an
        // immutable file is a SIGBUS, which no real full or read-only disk causes (SQLite
        // allocates that file's pages before mapping them).
        let files: Vec<PathBuf> = ["tollgate.db", "tollgate.db-wal"]
            .iter()
            .map(|f| state.join(f))
            .filter(|p| p.exists())
            .chain([state.to_path_buf()])
            .collect();
        for f in &files {
            let ok = Command::new("chattr").arg("+i").arg(f).status().unwrap();
            assert!(ok.success(), "chattr +i {} failed", f.display());
        }
        Self(files)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(f).status();
        }
    }
}

async fn expect_unavailable(gw: &Gateway) {
    let r = token(gw, "/auth/token", "legacy-key", "legacy-secret").await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "temporarily_unavailable");
}

#[tokio::test]
async fn an_unwritable_state_directory_answers_503_and_jwts_keep_working() {
    let up = start_upstream().await;
    let gw = Gateway::start(GatewaySpec::new(catalog(&up, "")), &TestKey::generate()).await;
    assert_eq!(
        token(&gw, "/auth/token", "legacy-key", "legacy-secret")
            .await
            .status(),
        200
    );
    let jwt = {
        let v: Value = token(&gw, "/credential/jwt", "reader", "reader-secret")
            .await
            .json()
            .await
            .unwrap();
        v["access_token"].as_str().unwrap().to_string()
    };

    let guard = Immutable::set(&gw.state_dir());
    expect_unavailable(&gw).await;
    assert!(
        gw.wait_for_log("store (sqlite) unavailable").await,
        "{}",
        gw.log()
    );
    assert!(
        gw.log()
            .contains("check that the state directory is writable and not full")
    );
    // Stateless JWTs are still issued and validated.
    assert_eq!(call(&gw, "/orders/x", &jwt).await, 200);
    let r = token(&gw, "/credential/jwt", "reader", "reader-secret").await;
    assert_eq!(r.status(), 200);

    drop(guard);
    let r = token(&gw, "/auth/token", "legacy-key", "legacy-secret").await;
    assert_eq!(
        r.status(),
        200,
        "writes work again once the directory is writable"
    );
}

#[tokio::test]
async fn a_full_state_directory_answers_503_and_jwts_keep_working() {
    let up = start_upstream().await;
    let mut spec = GatewaySpec::new(catalog(&up, ""));
    // The kernel's file-size limit on the gateway: writes that would take a file past
    // 256 KiB fail with EFBIG, as writes on a full disk fail with ENOSPC.
    spec.wrapper = ["prlimit", "--fsize=262144", "--"]
        .map(String::from)
        .to_vec();
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    let jwt = {
        let v: Value = token(&gw, "/credential/jwt", "reader", "reader-secret")
            .await
            .json()
            .await
            .unwrap();
        v["access_token"].as_str().unwrap().to_string()
    };
    // Each stored token grows the write-ahead log until a write no longer fits.
    let mut issued = 0;
    let full = loop {
        let r = token(&gw, "/auth/token", "legacy-key", "legacy-secret").await;
        match r.status().as_u16() {
            200 => issued += 1,
            503 => break r,
            other => panic!("unexpected {other}"),
        }
        assert!(issued < 5_000, "the limit was never reached:\n{}", gw.log());
    };
    assert!(full.headers().contains_key("retry-after"));
    let v: Value = full.json().await.unwrap();
    assert_eq!(v["error"], "temporarily_unavailable");
    assert!(
        gw.wait_for_log("store (sqlite) unavailable").await,
        "{}",
        gw.log()
    );
    assert!(
        gw.log().contains("full"),
        "the log line says why: {}",
        gw.log()
    );
    // Stateless JWTs are still issued and validated.
    assert_eq!(call(&gw, "/orders/x", &jwt).await, 200);
    assert_eq!(
        token(&gw, "/credential/jwt", "reader", "reader-secret")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn sigterm_under_load_finishes_in_flight_requests_and_loses_nothing() {
    let up = start_upstream().await;
    let mut spec = GatewaySpec::new(catalog(&up, ""));
    spec.server =
        Some("server:\n  threads: 2\n  grace_period: 5s\n  graceful_shutdown_timeout: 5s\n".into());
    let mut gw = Gateway::start(spec, &TestKey::generate()).await;
    let jwt = {
        let v: Value = token(&gw, "/credential/jwt", "reader", "reader-secret")
            .await
            .json()
            .await
            .unwrap();
        v["access_token"].as_str().unwrap().to_string()
    };
    // Warm the secret cache so issuance requests are quick and numerous.
    assert_eq!(
        token(&gw, "/auth/token", "legacy-key", "legacy-secret")
            .await
            .status(),
        200
    );

    // Slow proxied requests and a stream of issuance requests, in flight together.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let url = gw.url("/orders/__sleep/1000");
        let jwt = jwt.clone();
        slow.push(tokio::spawn(async move {
            client()
                .get(url)
                .bearer_auth(jwt)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    let mut issuance = Vec::new();
    for _ in 0..40 {
        let url = gw.url("/auth/token");
        issuance.push(tokio::spawn(async move {
            let r = client()
                .post(url)
                .basic_auth("legacy-key", Some("legacy-secret"))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await?;
            let status = r.status().as_u16();
            let body: Value = r.json().await?;
            Ok::<_, reqwest::Error>((status, body["access_token"].as_str().map(str::to_string)))
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.signal("TERM");

    for s in slow {
        assert_eq!(
            s.await.unwrap().unwrap(),
            200,
            "an in-flight proxied request was cut off"
        );
    }
    let mut acknowledged = Vec::new();
    for i in issuance {
        if let Ok((200, Some(t))) = i.await.unwrap() {
            acknowledged.push(t);
        }
    }
    assert!(!acknowledged.is_empty());
    let status = gw.wait();
    assert!(
        status.success(),
        "graceful shutdown exits cleanly: {status}"
    );

    // Every token the clients received is in the store after a restart.
    gw.spawn().await;
    for t in &acknowledged {
        assert_eq!(call(&gw, "/orders/x", t).await, 200);
    }
}
