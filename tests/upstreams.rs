//! Upstream failures: refused connections, hangs, dead pool members, health checks.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn client() -> reqwest::Client {
    // A hang would show up as this client's timeout, failing the test.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

#[tokio::test]
async fn refused_connection_is_502_and_other_apis_keep_serving() {
    let up = start_upstream().await;
    let dead = free_port();
    let spec = GatewaySpec::new(format!(
        r#"
apis:
  - name: dead
    prefix: /dead
    upstream: {{ servers: ["127.0.0.1:{dead}"], connect_timeout: 1s }}
    auth: none
  - name: live
    prefix: /live
    upstream: {{ servers: ["{}"] }}
    auth: none
"#,
        up.addr
    ));
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    let r = client().get(gw.url("/dead/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "application/json");
    // The gateway closes the connection after a proxy failure, and says so.
    assert_eq!(r.headers()["connection"], "close");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "bad_gateway");
    let r = client().get(gw.url("/live/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        gw.metric("tollgate_requests_total{api=\"dead\",method=\"GET\",status=\"5xx\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_hanging_upstream_is_504_after_the_read_timeout() {
    let up = start_upstream().await;
    let spec = GatewaySpec::new(format!(
        r#"
apis:
  - name: slow
    prefix: /slow
    strip_prefix: true
    upstream: {{ servers: ["{}"], read_timeout: 300ms }}
    auth: none
"#,
        up.addr
    ));
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    // The upstream would answer after 60 s; the client gives up after 15 s.
    let r = client()
        .get(gw.url("/slow/__sleep/60000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "gateway_timeout");
    // A fast request on the same API still works.
    assert_eq!(
        client()
            .get(gw.url("/slow/fast"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_dead_pool_member_is_skipped() {
    let up = start_upstream().await;
    let dead = free_port();
    let spec = GatewaySpec::new(format!(
        r#"
apis:
  - name: pool
    prefix: /pool
    upstream: {{ servers: ["127.0.0.1:{dead}", "{}"], connect_timeout: 1s }}
    auth: none
"#,
        up.addr
    ));
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    // Round robin sends every other first attempt to the dead server; the retry moves on.
    for i in 0..6 {
        let r = client()
            .get(gw.url(&format!("/pool/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i}");
    }
}

#[tokio::test]
async fn health_checks_take_a_server_out_and_bring_it_back() {
    let port = free_port();
    let spec = GatewaySpec::new(format!(
        r#"
apis:
  - name: hc
    prefix: /hc
    upstream:
      servers: ["127.0.0.1:{port}"]
      connect_timeout: 500ms
      health_check: {{ kind: tcp, interval: 100ms, timeout: 200ms, unhealthy_after: 1, healthy_after: 1 }}
    auth: none
"#
    ));
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    // Nothing listens: once the check has run, the pool has no healthy server.
    let mut saw_no_healthy = false;
    for _ in 0..100 {
        let r = client().get(gw.url("/hc/x")).send().await.unwrap();
        assert_eq!(r.status(), 502);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "bad_gateway");
        if gw.log().contains("no healthy upstream server") {
            saw_no_healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_no_healthy, "{}", gw.log());

    // Start a server on that port: the next checks bring it back.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut buf = [0u8; 4096];
                if s.read(&mut buf).await.unwrap_or(0) > 0 {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                }
            });
        }
    });
    let mut recovered = false;
    for _ in 0..100 {
        if client().get(gw.url("/hc/x")).send().await.unwrap().status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "{}", gw.log());
}

/// One API `name` at `/name`, open, in front of `addr`.
fn one_api(name: &str, addr: &str) -> GatewaySpec {
    GatewaySpec::new(format!(
        "apis:\n  - name: {name}\n    prefix: /{name}\n    upstream: {{ servers: [\"{addr}\"] }}\n    auth: none\n"
    ))
}

/// Read one request header (up to its blank line) from `s`; `None` once it closes first.
/// The bytes of a request sent with the header are not kept apart: these upstreams get no
/// bodies.
async fn read_header(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Some(got)
}

/// A one-connection HTTP/1.1 upstream that keeps the raw request header it receives and
/// answers with a mixed-case header name.
async fn raw_upstream() -> (String, tokio::task::JoinHandle<String>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let got = read_header(&mut s)
            .await
            .expect("the gateway closed before a whole header");
        s.write_all(b"HTTP/1.1 200 OK\r\nX-Upstream-Mixed: u\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        String::from_utf8(got).unwrap()
    });
    (addr, task)
}

/// One request over a raw connection; returns the raw response.
async fn raw_request(gw: &Gateway, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = gw
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut s = tokio::net::TcpStream::connect(authority).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).ends_with("ok") {
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

#[tokio::test]
async fn header_names_keep_their_case_unless_the_server_section_says_lowercase() {
    for lowercase in [false, true] {
        let (addr, upstream) = raw_upstream().await;
        let mut spec = one_api("raw", &addr);
        if lowercase {
            spec.server = Some(
                "server:\n  threads: 2\n  grace_period: 1s\n  graceful_shutdown_timeout: 1s\n  header_case: lowercase\n"
                    .into(),
            );
        }
        let gw = Gateway::start(spec, &TestKey::generate()).await;
        let answer = raw_request(
            &gw,
            "GET /raw/x HTTP/1.1\r\nHost: gw.example\r\nX-Client-Mixed: c\r\n\r\n",
        )
        .await;
        let sent = upstream.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        if lowercase {
            assert!(sent.contains("\r\nx-client-mixed: c\r\n"), "{sent}");
            assert!(answer.contains("\r\nx-upstream-mixed: u\r\n"), "{answer}");
        } else {
            assert!(sent.contains("\r\nX-Client-Mixed: c\r\n"), "{sent}");
            assert!(answer.contains("\r\nX-Upstream-Mixed: u\r\n"), "{answer}");
        }
        // What the gateway adds is written the same way in both modes.
        for added in ["x-forwarded-for: 127.0.0.1", "x-forwarded-proto: http"] {
            assert!(sent.contains(&format!("\r\n{added}\r\n")), "{sent}");
        }
        assert!(sent.contains("\r\nx-request-id: "), "{sent}");
        assert!(answer.contains("\r\nx-request-id: "), "{answer}");
    }
}

#[tokio::test]
async fn an_http_1_0_request_without_host_reaches_the_upstream_with_the_servers_host() {
    let (addr, upstream) = raw_upstream().await;
    let spec = one_api("raw", &addr);
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    let answer = raw_request(&gw, "GET /raw/x HTTP/1.0\r\n\r\n").await;
    let sent = upstream.await.unwrap();
    assert!(answer.starts_with("HTTP/1."), "{answer}");
    assert!(sent.contains(&format!("\r\nHost: {addr}\r\n")), "{sent}");
}

/// An upstream that answers every request on a connection with `ok`, and counts the
/// connections it accepted; with `close_after_answer`, it closes each connection (FIN) a
/// moment after answering, though the answer allowed keep-alive.
async fn counting_upstream(close_after_answer: bool) -> (String, Arc<AtomicUsize>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                while read_header(&mut s).await.is_some() {
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                    if close_after_answer {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return; // dropped: FIN to the gateway's idle connection
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn idle_upstream_connections_are_reused_and_one_the_upstream_closed_is_not() {
    for close_after_answer in [false, true] {
        let (addr, accepted) = counting_upstream(close_after_answer).await;
        let spec = one_api("kept", &addr);
        let gw = Gateway::start(spec, &TestKey::generate()).await;
        for _ in 0..3 {
            let r = client().get(gw.url("/kept/x")).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.text().await.unwrap(), "ok");
            // Long enough for a closing upstream's FIN to reach the idle connection.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let expected = if close_after_answer { 3 } else { 1 };
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            expected,
            "close: {close_after_answer}"
        );
    }
}
