//! Cluster mode with real processes: gateways on one real `redis-server`. What one node
//! issues, another refreshes, a third introspects and revokes, and every node refuses at
//! once; Redis killed, restarted or paused costs the stateful endpoints (503) but never JWT
//! validation. The shared signing keys are tested in tests/cluster_keys.rs.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "cluster/support.rs"]
mod support;

use common::oauth::{call, claims};
use common::redis::Redis;
use common::*;
use oauth2::TokenResponse;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::{eventually, http, oauth, password_grant, spec};

async fn nodes(n: usize, redis: &Redis, up: &Upstream, key: &TestKey) -> Vec<Gateway> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Gateway::start(spec(redis, up, None, "15m"), key).await);
    }
    out
}

async fn form(gw: &Gateway, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let r = http()
        .post(gw.url(path))
        .basic_auth("reporting", Some("reporting-secret"))
        .form(params)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_from_one_node_is_refreshed_introspected_and_revoked_on_the_others() {
    let redis = Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    let n = nodes(3, &redis, &up, &key).await;
    let (a, b, c) = (&n[0], &n[1], &n[2]);

    // Minted on A (a refresh token, stored in Redis), refreshed on B.
    let (_, refresh) = password_grant(a).await;
    let t = oauth(b)
        .exchange_refresh_token(&oauth2::RefreshToken::new(refresh.clone()))
        .request_async(&http())
        .await
        .unwrap();
    let access = t.access_token().secret().clone();
    let next_refresh = t.refresh_token().unwrap().secret().clone();
    assert_ne!(next_refresh, refresh, "rotated");
    // Every node serves it; A and B now have it in their caches.
    for gw in [a, b, c] {
        assert_eq!(call(gw, "/orders/1", &access).await, 200);
    }
    // Introspected on C.
    let (status, v) = form(c, "/credential/introspect", &[("token", &access)]).await;
    assert_eq!((status, v["active"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(v["username"], "alice");
    let (_, v) = form(c, "/credential/introspect", &[("token", &next_refresh)]).await;
    assert_eq!(v["active"], true, "{v}");

    // Revoked on C: refused on A and B (from their caches) as soon as the feed delivers.
    let (status, _) = form(c, "/credential/revoke", &[("token", &access)]).await;
    assert_eq!(status, 200);
    for gw in [a, b] {
        eventually("the revoked token is refused", || async {
            call(gw, "/orders/1", &access).await == 401
        })
        .await;
    }
    let (_, v) = form(a, "/credential/introspect", &[("token", &access)]).await;
    assert_eq!(v["active"], false);
    // Revoking the refresh token on A revokes its whole grant, on every node.
    let (status, _) = form(a, "/credential/revoke", &[("token", &next_refresh)]).await;
    assert_eq!(status, 200);
    let (status, v) = form(
        b,
        "/credential/jwt/regenerate",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &next_refresh),
        ],
    )
    .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")));
    assert!(b.metric("tollgate_store_up").await == 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_on_two_nodes_share_one_grant() {
    let redis = Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    let n = nodes(2, &redis, &up, &key).await;
    for round in 0..10 {
        let (first, refresh) = password_grant(&n[0]).await;
        let gid = claims(&first)["gid"].clone();
        let params = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ];
        let (ra, rb) = tokio::join!(
            form(&n[0], "/credential/jwt/regenerate", &params),
            form(&n[1], "/credential/jwt/regenerate", &params)
        );
        // Within the grace period both succeed, as one rotation of one grant: never two
        // families.
        assert_eq!((ra.0, rb.0), (200, 200), "round {round}: {ra:?} {rb:?}");
        let ga = claims(ra.1["access_token"].as_str().unwrap())["gid"].clone();
        let gb = claims(rb.1["access_token"].as_str().unwrap())["gid"].clone();
        assert_eq!((&ga, &gb), (&gid, &gid), "round {round}");
        assert_ne!(ra.1["refresh_token"], rb.1["refresh_token"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reused_refresh_token_revokes_the_grant_on_every_node() {
    let redis = Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    let mut s = spec(
        &redis,
        &up,
        Some(
            "tokens:\n  signing_key: { algorithm: ES256, file: signing.pem, kid: test-key }\n  refresh_grace_period: 0s\n"
                .into(),
        ),
        "15m",
    );
    let a = Gateway::start(s, &key).await;
    s = spec(
        &redis,
        &up,
        Some(
            "tokens:\n  signing_key: { algorithm: ES256, file: signing.pem, kid: test-key }\n  refresh_grace_period: 0s\n"
                .into(),
        ),
        "15m",
    );
    let b = Gateway::start(s, &key).await;
    let (access, refresh) = password_grant(&a).await;
    assert_eq!(call(&b, "/orders/1", &access).await, 200);
    let params = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    let (first, _) = form(&a, "/credential/jwt/regenerate", &params).await;
    assert_eq!(first, 200);
    // Without a grace period a second use is theft: the grant is revoked everywhere,
    // including the access token cached on B.
    let (again, v) = form(&b, "/credential/jwt/regenerate", &params).await;
    assert_eq!((again, v["error"].as_str()), (400, Some("invalid_grant")));
    eventually("the grant's access token is refused on A", || async {
        call(&a, "/orders/1", &access).await == 401
    })
    .await;
    assert_eq!(call(&b, "/orders/1", &access).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_misses_no_revocation() {
    let redis = Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    let mut n = nodes(2, &redis, &up, &key).await;
    let (access, _) = password_grant(&n[0]).await;
    assert_eq!(call(&n[1], "/orders/1", &access).await, 200);
    n[1].kill();
    let (status, _) = form(&n[0], "/credential/revoke", &[("token", &access)]).await;
    assert_eq!(status, 200);
    n[1].spawn().await;
    // Its first request after the start already knows.
    assert_eq!(call(&n[1], "/orders/1", &access).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_revoke_command_reaches_every_node() {
    let redis = Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    let n = nodes(2, &redis, &up, &key).await;
    let (access, refresh) = password_grant(&n[0]).await;
    for gw in &n {
        assert_eq!(call(gw, "/orders/1", &access).await, 200);
    }
    let out = std::process::Command::new(binary())
        .args(["revoke", "--user", "alice", "-c"])
        .arg(&n[1].config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for gw in &n {
        eventually("alice's token is refused", || async {
            call(gw, "/orders/1", &access).await == 401
        })
        .await;
    }
    let (status, _) = form(
        &n[1],
        "/credential/jwt/regenerate",
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(status, 400, "her refresh token is revoked too");
    // Tokens issued after the revocation are good again (a second later: times are seconds).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (fresh, _) = password_grant(&n[0]).await;
    assert_eq!(call(&n[1], "/orders/1", &fresh).await, 200);
}
async fn issue_cc(gw: &Gateway) -> (u16, Value) {
    form(
        gw,
        "/credential/token",
        &[("grant_type", "client_credentials")],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_then_restarted_costs_issuance_not_validation() {
    let mut redis = Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    let n = nodes(2, &redis, &up, &key).await;
    let (cached, _) = password_grant(&n[0]).await;
    assert_eq!(call(&n[0], "/orders/1", &cached).await, 200);
    // Another JWT, never seen by node 1: validated from its signature alone.
    let fresh = key.token(
        "https://gateway.cluster.test",
        serde_json::json!({"aud": "orders", "client_id": "reporting", "sub": "reporting"}),
    );
    // Opaque tokens: one node 0 has checked (in its validation cache), one no node has.
    let opaque_token = |v: Value| v["access_token"].as_str().unwrap().to_string();
    let seen = opaque_token(issue_cc(&n[0]).await.1);
    let unseen = opaque_token(issue_cc(&n[0]).await.1);
    assert_eq!(call(&n[0], "/orders/1", &seen).await, 200);
    redis.kill();
    let (status, v) = issue_cc(&n[0]).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{v}"
    );
    let (status, _) = form(
        &n[1],
        "/credential/jwt",
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-pw"),
        ],
    )
    .await;
    assert_eq!(status, 503, "a password grant stores its refresh token");
    assert_eq!(call(&n[0], "/orders/1", &cached).await, 200);
    assert_eq!(call(&n[1], "/orders/1", &fresh).await, 200);
    assert_eq!(call(&n[1], "/orders/1", &cached).await, 200);
    // What the node has checked it still answers, in the proxy and in introspection alike;
    // an opaque token it has not seen cannot be looked up: 503, never a wrong "inactive".
    assert_eq!(call(&n[0], "/orders/1", &seen).await, 200);
    let (status, v) = form(&n[0], "/credential/introspect", &[("token", &seen)]).await;
    assert_eq!((status, &v["active"]), (200, &Value::Bool(true)), "{v}");
    assert_eq!(call(&n[1], "/orders/1", &unseen).await, 503);
    let (status, v) = form(&n[1], "/credential/introspect", &[("token", &unseen)]).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{v}"
    );
    eventually("tollgate_store_up drops", || async {
        n[1].metric("tollgate_store_up").await == 0.0
    })
    .await;
    assert!(
        n[0].metric("tollgate_store_errors_total{op=\"insert\"}")
            .await
            >= 1.0
    );
    assert!(n[0].log().contains("unavailable"), "a clear log line");

    // Back (empty: no persistence configured): the nodes reconnect by themselves, and put
    // back the signing key set the new Redis lacks.
    redis.restart();
    for gw in &n {
        eventually("issuance works again", || async {
            issue_cc(gw).await.0 == 200
        })
        .await;
        eventually("tollgate_store_up is back", || async {
            gw.metric("tollgate_store_up").await == 1.0
        })
        .await;
    }
    assert!(n[0].log().contains("is back after"));
    // A token issued now is stored in the new Redis and works on the other node.
    let (_, v) = issue_cc(&n[0]).await;
    let opaque = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(call(&n[1], "/orders/1", &opaque).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_redis_gives_timeouts_not_hangs() {
    let redis = Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    let n = nodes(1, &redis, &up, &key).await;
    let (cached, _) = password_grant(&n[0]).await;
    redis.signal("-STOP");
    // Every call answers: 503 from the store timeout (300ms here). The bound only keeps a
    // regression from hanging the test run.
    for _ in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(60), issue_cc(&n[0])).await;
        let (status, v) = r.expect("the token endpoint answered");
        assert_eq!(
            (status, v["error"].as_str()),
            (503, Some("temporarily_unavailable"))
        );
    }
    assert_eq!(call(&n[0], "/orders/1", &cached).await, 200);
    redis.signal("-CONT");
    eventually("issuance works again", || async {
        issue_cc(&n[0]).await.0 == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_protected_route_makes_no_redis_call_on_a_cache_hit() {
    let redis = Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    let n = nodes(1, &redis, &up, &key).await;
    let (_, v) = issue_cc(&n[0]).await;
    let opaque = v["access_token"].as_str().unwrap().to_string();
    let (jwt, _) = password_grant(&n[0]).await;
    // First use: a JWT needs no Redis at all, an opaque token one lookup.
    assert_eq!(call(&n[0], "/orders/1", &jwt).await, 200);
    assert_eq!(call(&n[0], "/orders/1", &opaque).await, 200);
    // The node's own background work (feed reads, probes) also runs commands: count what
    // 200 cached requests add beyond that, over the same span without requests.
    let idle_span = {
        let before = redis.commands_processed();
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        (redis.commands_processed() - before, start.elapsed())
    };
    let before = redis.commands_processed();
    let start = Instant::now();
    for _ in 0..100 {
        assert_eq!(call(&n[0], "/orders/1", &jwt).await, 200);
        assert_eq!(call(&n[0], "/orders/1", &opaque).await, 200);
    }
    let busy = redis.commands_processed() - before;
    // Background commands come a few per second; 200 requests making a call each would add
    // 200 (the INFO command of each reading counts once).
    let background_allowance = 4 + 8 * (start.elapsed().as_secs() + 1) + idle_span.0;
    assert!(
        busy <= background_allowance,
        "{busy} Redis commands during 200 cached requests (idle: {} in {:?})",
        idle_span.0,
        idle_span.1
    );
}
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_start_quietly_and_log_one_outage_per_outage() {
    let mut redis = Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    let n = nodes(3, &redis, &up, &key).await;
    // Past the first blocking read of the revocation feed on every node: no failed store
    // call (so `tollgate_store_up` never read 0) and no error logged.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for gw in &n {
        let m = gw.metrics().await;
        let errors: f64 = m
            .lines()
            .filter(|l| l.starts_with("tollgate_store_errors_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(errors, 0.0, "{m}");
        assert_eq!(gw.metric("tollgate_store_up").await, 1.0);
        let log = gw.log();
        assert!(
            !log.contains("ERROR") && !log.contains("unavailable"),
            "{log}"
        );
    }
    // One real outage: one line when it starts, one when it ends, on every node.
    redis.restart();
    for gw in &n {
        eventually("the node is back", || async {
            gw.log().contains("is back after")
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for gw in &n {
        let log = gw.log();
        assert_eq!(log.matches(") unavailable:").count(), 1, "{log}");
        assert_eq!(log.matches("is back after").count(), 1, "{log}");
        assert_eq!(gw.metric("tollgate_store_up").await, 1.0);
    }
}
