//! One of two upstream servers killed mid-load, and brought back: requests in flight on it
//! answer 502 (not a hang), requests of the load go to the other server, the health check
//! takes it out and puts it back. Real processes: two Node HTTP/1.1 servers and the
//! gateway; every request of the paced load is counted.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::node::NodeServer;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Outcomes of a paced load: status (0: no answer) → count, and answers per server.
#[derive(Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    servers: BTreeMap<String, u64>,
}

async fn paced_load(url: String, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    while !stop.load(Ordering::Relaxed) {
        let (status, server) = match client.get(&url).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                (status, body["server"].as_str().map(String::from))
            }
            Err(_) => (0, None),
        };
        {
            let mut t = tally.lock().unwrap();
            *t.statuses.entry(status).or_default() += 1;
            if let Some(s) = server {
                *t.servers.entry(s).or_default() += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_mid_load_is_taken_out_and_comes_back() {
    let a = NodeServer::start("http/server.mjs", &["a".to_string(), 0.to_string()]);
    let b = NodeServer::start("http/server.mjs", &["b".to_string(), 0.to_string()]);
    let a_port = a.port;
    let spec = GatewaySpec::new(format!(
        r#"
apis:
  - name: app
    prefix: /app
    strip_prefix: true
    upstream:
      servers: ["127.0.0.1:{a_port}", "127.0.0.1:{}"]
      read_timeout: 8s
      health_check: {{ kind: tcp, interval: 200ms, timeout: 200ms, unhealthy_after: 1, healthy_after: 1 }}
    auth: none
  - name: only-a
    prefix: /only-a
    strip_prefix: true
    upstream: {{ servers: ["127.0.0.1:{a_port}"], read_timeout: 8s }}
    auth: none
"#,
        b.port
    ));
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let load: Vec<_> = (0..4)
        .map(|_| tokio::spawn(paced_load(gw.url("/app/x"), stop.clone(), tally.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Slow requests in flight on the server about to die (through an API that has only
    // it): a POST, never sent twice, and a GET.
    let client = reqwest::Client::new();
    let slow = |method: reqwest::Method| {
        let req = client.request(method, gw.url("/only-a/slow/4000/")).send();
        tokio::spawn(async move {
            match req.await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    (status, body)
                }
                Err(e) => (0, Value::String(e.to_string())),
            }
        })
    };
    let in_flight: Vec<_> = [reqwest::Method::POST, reqwest::Method::GET]
        .into_iter()
        .map(slow)
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(a); // SIGKILL

    // Answered 502 at once: not the read timeout's 504, not a dropped connection.
    let mut on_a = 0;
    for s in in_flight {
        let (status, body) = s.await.unwrap();
        assert_eq!(status, 502, "{body}\n{}", gw.log());
        on_a += 1;
    }
    assert!(
        gw.wait_for_log(&format!("127.0.0.1:{a_port}")).await,
        "{}",
        gw.log()
    );
    // Taken out: from here on only b answers, and nothing fails.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = std::mem::take(&mut *tally.lock().unwrap());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = std::mem::take(&mut *tally.lock().unwrap());
    assert_eq!(
        out.statuses.keys().collect::<Vec<_>>(),
        [&200],
        "{:?}",
        out.statuses
    );
    assert_eq!(
        out.servers.keys().collect::<Vec<_>>(),
        ["b"],
        "{:?}",
        out.servers
    );

    // Back on its port: the health check puts it back in the rotation.
    let a = NodeServer::start("http/server.mjs", &["a".to_string(), a_port.to_string()]);
    let mut back = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tally.lock().unwrap().servers.contains_key("a") {
            back = true;
            break;
        }
    }
    assert!(back, "server a never came back:\n{}", gw.log());
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let after = std::mem::take(&mut *tally.lock().unwrap());
    let failed: u64 = [&before, &after]
        .iter()
        .flat_map(|t| t.statuses.iter())
        .filter(|(s, _)| **s != 200)
        .map(|(_, n)| n)
        .sum();
    assert!(
        after.statuses.keys().all(|s| *s == 200),
        "{:?}",
        after.statuses
    );
    eprintln!(
        "paced load: around the kill {:?}; taken out {:?}; back {:?} by server {:?}; \
         requests in flight on the killed server: {on_a} (502); non-200 in total: {failed}",
        before.statuses, out.statuses, after.statuses, after.servers
    );
    // Failures only ever during the kill itself, and never a hang (status 0).
    assert!(!before.statuses.contains_key(&0), "{:?}", before.statuses);
    drop(a);
}

#[tokio::test]
async fn connect_failures_try_other_servers_up_to_the_configured_retries() {
    let up = start_upstream().await;
    let dead = free_port(); // nothing listens: every connect is refused
    let spec = GatewaySpec::new(format!(
        r#"
apis:
  - {{ name: each, prefix: /each, upstream: {{ servers: ["127.0.0.1:{dead}", "{a}"] }}, auth: none }}
  - {{ name: none, prefix: /none, upstream: {{ servers: ["127.0.0.1:{dead}", "{a}"], retries: 0 }}, auth: none }}
  - {{ name: many, prefix: /many, upstream: {{ servers: ["127.0.0.1:{dead}", "{a}"], retries: 5 }}, auth: none }}
"#,
        a = up.addr
    ));
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    let client = gw.client();
    // Round robin alternates the two servers: half the requests meet the dead one first.
    let mut statuses = std::collections::BTreeMap::<(&str, u16), u32>::new();
    for api in ["each", "none", "many"] {
        for i in 0..10 {
            let r = client
                .get(gw.url(&format!("/{api}/{i}")))
                .send()
                .await
                .unwrap();
            *statuses.entry((api, r.status().as_u16())).or_default() += 1;
        }
    }
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        [
            (("each", 200), 10),
            (("many", 200), 10), // at most one retry each: there is one other server
            (("none", 200), 5),
            (("none", 502), 5),
        ]
    );
}
