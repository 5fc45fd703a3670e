//! Client-secret checks under a burst, against the real gateway: when a client's cached
//! success has expired, 64 concurrent token requests share one argon2 verification
//! (`tollgate_secret_verifications_total`), and every one of them gets its token.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::time::Duration;

const RUNS: &str = "tollgate_secret_verifications_total";

fn catalog(up: &Upstream) -> String {
    format!(
        r#"
apis:
  - {{ name: orders, prefix: /orders, upstream: {{ servers: ["{}"] }}, auth: jwt }}
credentials:
  - {{ client_id: busy, client_secret_hash: "{h}", acl: [orders] }}
  - {{ client_id: calm, client_secret_hash: "{h}", acl: [orders] }}
"#,
        up.addr,
        h = cheap_hash("busy-secret")
    )
}

async fn burst(gw: &Gateway, n: usize, secret: &str) -> Vec<u16> {
    let client = reqwest::Client::new();
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let req = client
                .post(gw.url("/credential/jwt"))
                .basic_auth("busy", Some(secret))
                .form(&[("grant_type", "client_credentials")]);
            tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_after_the_cache_expires_runs_one_verification() {
    let up = start_upstream().await;
    let mut spec = GatewaySpec::new(catalog(&up));
    spec.extra = "client_auth_cache: { max_entries: 100, ttl: 2s }\n".into();
    let gw = Gateway::start(spec, &TestKey::generate()).await;

    assert_eq!(burst(&gw, 1, "busy-secret").await, [200]);
    let first = gw.metric(RUNS).await;
    assert_eq!(first, 1.0);
    // Left unused past its ttl, the entry expires (a use past 3/4 of it would refresh it).
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let statuses = burst(&gw, 64, "busy-secret").await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        gw.metric(RUNS).await,
        first + 1.0,
        "64 checks, one argon2 run"
    );

    // A wrong secret is never remembered as right: each burst of wrong ones is refused
    // whole, and the right one still works from its entry.
    let statuses = burst(&gw, 5, "wrong-secret").await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(burst(&gw, 1, "busy-secret").await, [200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_the_hashing_queue_token_requests_are_shed_with_503() {
    let up = start_upstream().await;
    let mut spec = GatewaySpec::new(catalog(&up));
    // One verification at a time and none waiting: a second concurrent check is shed.
    spec.extra = "limits: { hash_concurrency: 1, hash_queue: 0 }\n".into();
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    let client = reqwest::Client::new();
    // 32 wrong secrets for one client at once (each a different check, each an argon2 run;
    // the brute-force limit counts failures after the check, so all 32 are checked).
    let calls: Vec<_> = (0..32)
        .map(|i| {
            let req = client
                .post(gw.url("/credential/jwt"))
                .basic_auth("busy", Some(format!("guess-{i}")))
                .form(&[("grant_type", "client_credentials")]);
            tokio::spawn(async move {
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                let retry = r.headers().get("retry-after").cloned();
                let body: serde_json::Value = r.json().await.unwrap();
                (status, retry, body)
            })
        })
        .collect();
    let mut shed = 0;
    for c in calls {
        let (status, retry, body) = c.await.unwrap();
        match status {
            401 => assert_eq!(body["error"], "invalid_client", "{body}"),
            503 => {
                shed += 1;
                assert_eq!(body["error"], "temporarily_unavailable", "{body}");
                assert_eq!(retry.unwrap(), "1");
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(shed >= 1, "no request was shed");
    let runs = gw.metric(RUNS).await;
    assert!(runs < 32.0, "shed checks run no argon2: {runs}");
    // The queue drained, another client is served.
    let r = client
        .post(gw.url("/credential/jwt"))
        .basic_auth("calm", Some("busy-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_client_id_is_refused_without_an_argon2_run() {
    let up = start_upstream().await;
    let gw = Gateway::start(GatewaySpec::new(catalog(&up)), &TestKey::generate()).await;
    let client = reqwest::Client::new();
    for i in 0..20 {
        let r = client
            .post(gw.url("/credential/jwt"))
            .basic_auth(format!("made-up-{i}"), Some("guess"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
    }
    assert_eq!(
        gw.metric(RUNS).await,
        0.0,
        "client ids are public: no hashing"
    );
    // A known client with a wrong secret costs one.
    let r = client
        .post(gw.url("/credential/jwt"))
        .basic_auth("busy", Some("guess"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(gw.metric(RUNS).await, 1.0);
}

#[tokio::test]
async fn cache_sizes_are_exported_and_stay_within_their_bounds() {
    let up = start_upstream().await;
    let mut spec = GatewaySpec::new(catalog(&up));
    spec.extra = "validation_cache: { max_entries: 4, ttl: 60s }\n".into();
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    let client = gw.client();
    // Ten tokens (of two clients) presented once each: more than the cache may hold.
    for i in 0..10 {
        let id = if i % 2 == 0 { "busy" } else { "calm" };
        let token = access_token(&gw, "/credential/jwt", id, "busy-secret").await;
        let r = client
            .get(gw.url("/orders/1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let validation = gw
        .metric("tollgate_cache_entries{cache=\"validation\"}")
        .await;
    assert!((1.0..=4.0).contains(&validation), "{validation}");
    // Two clients' secrets verified (moka's count follows its inserts shortly).
    let mut secrets = 0.0;
    for _ in 0..50 {
        secrets = gw.metric("tollgate_cache_entries{cache=\"secrets\"}").await;
        if secrets == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(secrets, 2.0);
    assert_eq!(
        gw.metric("tollgate_cache_entries{cache=\"revocations\"}")
            .await,
        0.0
    );
}
