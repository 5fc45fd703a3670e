//! Slow and hostile connections: slowloris headers, trickled bodies, idle keep-alive
//! connections and a listener's connection cap, against the running gateway. Each slow
//! connection must be closed by its own deadline while a normal client goes on being
//! served; the closes are counted through `tollgate_client_timeouts_total`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn catalog(up: &Upstream) -> String {
    format!(
        r#"
apis:
  - {{ name: open, prefix: /open, upstream: {{ servers: ["{a}"] }}, auth: none }}
  - {{ name: orders, prefix: /orders, upstream: {{ servers: ["{a}"] }}, auth: jwt }}
credentials:
  - client_id: reader
    client_secret_hash: "{reader}"
    acl: [orders]
"#,
        a = up.addr,
        reader = cheap_hash("reader-secret"),
    )
}

/// This test process and the gateway it starts hold a socket per slow connection.
fn raise_fd_limit(want: u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        if l.rlim_cur < want {
            l.rlim_cur = want;
            l.rlim_max = l.rlim_max.max(want);
            assert_eq!(
                libc::setrlimit(libc::RLIMIT_NOFILE, &l),
                0,
                "cannot raise the open-file limit to {want}"
            );
        }
    }
}

async fn start(server: &str, extra_listeners: String) -> (Upstream, Gateway) {
    let up = start_upstream().await;
    let key = TestKey::generate();
    let mut spec = GatewaySpec::new(catalog(&up));
    spec.server = Some(format!(
        "server:\n  threads: 2\n  grace_period: 1s\n  graceful_shutdown_timeout: 1s\n{server}"
    ));
    spec.extra_listeners = extra_listeners;
    let gw = Gateway::start(spec, &key).await;
    (up, gw)
}

/// Until the server closes the connection (EOF or reset); what it sent first is returned.
async fn until_closed(conn: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One whole response: its status and body (by `Content-Length`).
async fn read_response(conn: &mut TcpStream) -> (u16, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the response header");
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while got.len() < end + len {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed in the response body");
        got.extend_from_slice(&buf[..n]);
    }
    (status, String::from_utf8_lossy(&got[end..]).into_owned())
}

/// Connect, send `head`, then trickle `drip` (see [`trickle_on`]).
async fn trickle(addr: String, head: Vec<u8>, drip: Vec<u8>, every: Duration) -> Option<Vec<u8>> {
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(&head).await.unwrap();
    trickle_on(conn, drip, every).await
}

/// Send `drip` one byte every `every` until the server closes the connection. Returns
/// what the server sent before closing, `None` if the bytes ran out first.
async fn trickle_on(mut conn: TcpStream, drip: Vec<u8>, every: Duration) -> Option<Vec<u8>> {
    let mut buf = [0u8; 512];
    for b in drip {
        tokio::select! {
            r = conn.read(&mut buf) => {
                return Some(match r {
                    Ok(0) | Err(_) => Vec::new(),
                    // An answer: the close follows.
                    Ok(n) => {
                        let mut got = buf[..n].to_vec();
                        got.extend(until_closed(&mut conn).await);
                        got
                    }
                });
            }
            _ = tokio::time::sleep(every) => {
                // A write refused by a reset: closed, nothing more to read.
                if conn.write_all(&[b]).await.is_err() {
                    return Some(Vec::new());
                }
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_and_slow_uploads_are_closed_while_a_normal_client_is_served() {
    raise_fd_limit(8192);
    let (_up, gw) = start(
        "  client_header_timeout: 3s\n  client_body_timeout: 3s\n  client_body_min_rate: 500\n",
        String::new(),
    )
    .await;
    let addr = format!("127.0.0.1:{}", gw.port);
    let closed = Arc::new(AtomicUsize::new(0));
    let mut slow = Vec::new();
    // 1,000 slowloris connections: a request line, then one header byte a second.
    for i in 0..1000 {
        let head = format!("GET /open/slow/{i} HTTP/1.1\r\nHost: gw\r\n").into_bytes();
        let drip = b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec();
        let (addr, closed) = (addr.clone(), closed.clone());
        slow.push(tokio::spawn(async move {
            // Closed without an answer (as nginx does): a slowloris reads none.
            if let Some(got) = trickle(addr, head, drip, Duration::from_secs(1)).await {
                assert_eq!(String::from_utf8_lossy(&got), "");
                closed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // 100 slow uploads, half through the proxy, half to the token endpoint: the header at
    // once, then the body at four bytes a second (the minimum is 500).
    for i in 0..100 {
        let path = if i % 2 == 0 {
            "/open/upload"
        } else {
            "/credential/jwt"
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n"
        )
        .into_bytes();
        let (addr, closed) = (addr.clone(), closed.clone());
        slow.push(tokio::spawn(async move {
            // Told why, then closed: 408 (RFC 9110 §15.5.9).
            if let Some(got) =
                trickle(addr, head, vec![b'a'; 200], Duration::from_millis(250)).await
            {
                let got = String::from_utf8_lossy(&got).into_owned();
                assert!(got.starts_with("HTTP/1.1 408"), "{got}");
                assert!(
                    got.to_ascii_lowercase().contains("connection: close"),
                    "{got}"
                );
                if i % 2 == 1 {
                    assert!(got.contains(r#""error":"invalid_request""#), "{got}");
                }
                closed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Meanwhile a normal client: an open route, a token and a protected route, in turn,
    // until every slow connection is closed.
    let client = gw.client();
    let mut served = 0;
    let mut latencies = Vec::new();
    let started = Instant::now();
    while closed.load(Ordering::Relaxed) < 1100 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {} of 1,100 slow connections were closed",
            closed.load(Ordering::Relaxed)
        );
        let t = Instant::now();
        let r = client.get(gw.url("/open/normal")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let token = access_token(&gw, "/credential/jwt", "reader", "reader-secret").await;
        let r = client
            .get(gw.url("/orders/1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        latencies.push(t.elapsed());
        served += 1;
    }
    for t in slow {
        t.await.unwrap();
    }
    latencies.sort();
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    eprintln!(
        "normal client: {served} rounds (open route, token, protected route) during the attack, p99 {p99:?}"
    );
    assert!(served > 0);
    assert_eq!(
        gw.metric("tollgate_client_timeouts_total{phase=\"header\"}")
            .await,
        1000.0
    );
    assert_eq!(
        gw.metric("tollgate_client_timeouts_total{phase=\"body\"}")
            .await,
        100.0
    );
    // Counted, not logged a line each: the attacker does not set the log's volume.
    let log = gw.log();
    assert!(!log.contains("too slow"), "{log}");
    assert!(!log.contains("Fail to proxy: Downstream"), "{log}");
}

#[tokio::test]
async fn deadlines_count_from_accept_extend_with_a_good_body_and_end_idle_connections() {
    let (_up, gw) = start(
        "  client_header_timeout: 2s\n  client_body_timeout: 1s\n  client_body_min_rate: 500\n  keepalive_timeout: 2s\n",
        String::new(),
    )
    .await;
    let addr = format!("127.0.0.1:{}", gw.port);

    // A connection that sends nothing is closed by the header deadline.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    assert!(until_closed(&mut silent).await.is_empty());
    assert_eq!(
        gw.metric("tollgate_client_timeouts_total{phase=\"header\"}")
            .await,
        1.0
    );

    // A body of 3,000 bytes at about 1,500 bytes a second takes longer than the 1 s body
    // timeout, but each 500 bytes earn another second: it is served.
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"POST /open/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 3000\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..20 {
        conn.write_all(&[b'b'; 150]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = read_response(&mut conn).await;
    assert_eq!(status, 200);
    assert!(body.contains(&"b".repeat(3000)));

    // Once answered, the connection is kept alive, then closed when idle too long; an idle
    // close is not a slow client.
    assert!(until_closed(&mut conn).await.is_empty());
    assert_eq!(
        gw.metric("tollgate_client_timeouts_total{phase=\"body\"}")
            .await,
        0.0
    );
    assert_eq!(
        gw.metric("tollgate_client_timeouts_total{phase=\"header\"}")
            .await,
        1.0
    );

    // A client that goes away mid-body at a token endpoint is no server error.
    let mut gone = TcpStream::connect(&addr).await.unwrap();
    gone.write_all(
        b"POST /credential/jwt HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\ngrant_type",
    )
    .await
    .unwrap();
    drop(gone);
    let series = "tollgate_requests_total{api=\"(token_service)\",method=\"POST\",status=";
    assert_eq!(gw.metric(&format!("{series}\"none\"}}")).await, 1.0);
    assert_eq!(gw.metric(&format!("{series}\"5xx\"}}")).await, 0.0);

    // The second request of a keep-alive connection: its header deadline starts at its
    // first byte, so a slow one is closed and counted.
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /open/a HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut conn).await.0, 200);
    let next = trickle_on(
        conn,
        b"GET /open/b HTTP/1.1\r\nHost: gw\r\n".to_vec(),
        Duration::from_millis(500),
    );
    assert_eq!(next.await, Some(Vec::new()), "a trickled header is closed");
    assert_eq!(
        gw.metric("tollgate_client_timeouts_total{phase=\"header\"}")
            .await,
        2.0
    );
}

#[tokio::test]
async fn a_listener_at_its_connection_cap_closes_the_next_connection() {
    let capped = free_port();
    let (_up, gw) = start(
        "  keepalive_timeout: 60s\n",
        format!("  - addr: 127.0.0.1:{capped}\n    max_connections: 20\n"),
    )
    .await;
    let addr = format!("127.0.0.1:{capped}");
    // 20 kept-alive connections, each having been served once.
    let mut held = Vec::new();
    for i in 0..20 {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        c.write_all(format!("GET /open/{i} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(read_response(&mut c).await.0, 200);
        held.push(c);
    }
    let listener = format!("listener=\"127.0.0.1:{capped}\"");
    assert_eq!(
        gw.metric(&format!("tollgate_connections{{{listener}}}"))
            .await,
        20.0
    );
    // The 21st is closed before anything is read from it.
    let mut over = TcpStream::connect(&addr).await.unwrap();
    let _ = over
        .write_all(b"GET /open/over HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await;
    assert!(until_closed(&mut over).await.is_empty());
    assert_eq!(
        gw.metric(&format!("tollgate_connections_refused_total{{{listener}}}"))
            .await,
        1.0
    );
    // The other listener is not capped by this one.
    let r = gw.client().get(gw.url("/open/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // A closed connection gives its slot back.
    held.truncate(15);
    let mut open = None;
    for _ in 0..100 {
        if gw
            .metric(&format!("tollgate_connections{{{listener}}}"))
            .await
            == 15.0
        {
            open = Some(());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(open.is_some(), "closed connections were not given back");
    let mut c = TcpStream::connect(&addr).await.unwrap();
    c.write_all(b"GET /open/again HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut c).await.0, 200);
}

#[tokio::test]
async fn an_upstream_answer_before_a_slow_body_is_not_followed_by_a_408() {
    // An upstream that answers as soon as it has the request header.
    let early = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let early_addr = early.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = early.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = c.read(&mut buf).await;
                let _ = c
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
                    .await;
                // Then read (and drop) whatever body comes.
                while matches!(c.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    let key = TestKey::generate();
    let mut spec = GatewaySpec::new(format!(
        "apis:\n  - {{ name: early, prefix: /early, upstream: {{ servers: [\"{early_addr}\"] }}, auth: none }}\n"
    ));
    spec.server = Some(
        "server:\n  threads: 2\n  grace_period: 1s\n  graceful_shutdown_timeout: 1s\n  client_body_timeout: 1s\n".into(),
    );
    let gw = Gateway::start(spec, &key).await;
    let got = trickle(
        format!("127.0.0.1:{}", gw.port),
        b"POST /early/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n\r\n".to_vec(),
        vec![b'a'; 100],
        Duration::from_millis(250),
    )
    .await
    .expect("closed by the body deadline");
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(!got.contains("408"), "{got}");
    assert!(!gw.log().contains("already sent"), "{}", gw.log());
}

#[tokio::test]
async fn a_busy_keep_alive_connection_outlives_every_deadline() {
    // Each request's body comes in the same segment as its header, so the gateway reads
    // nothing between one request's start and its end: its deadlines must still restart.
    let (_up, gw) = start(
        "  client_header_timeout: 1s\n  client_body_timeout: 1s\n  keepalive_timeout: 1s\n",
        String::new(),
    )
    .await;
    let mut conn = TcpStream::connect(format!("127.0.0.1:{}", gw.port))
        .await
        .unwrap();
    let started = Instant::now();
    let mut served = 0;
    // Three times the longest deadline, on one connection.
    // The token endpoint: answered by the gateway itself, with no read of the client while
    // it answers (a proxied request's connection is watched during its response).
    let basic = "cmVhZGVyOnJlYWRlci1zZWNyZXQ="; // reader:reader-secret
    let request = format!(
        "POST /credential/jwt HTTP/1.1\r\nHost: gw\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 29\r\n\r\n\
         grant_type=client_credentials"
    );
    while started.elapsed() < Duration::from_secs(3) {
        conn.write_all(request.as_bytes()).await.unwrap();
        let (status, body) = read_response(&mut conn).await;
        assert_eq!(status, 200, "request {served}: {body}");
        served += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served >= 10, "{served}");
    assert_eq!(
        gw.metric("tollgate_client_timeouts_total{phase=\"header\"}")
            .await,
        0.0
    );
}
