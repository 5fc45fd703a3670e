//! Signing keys in cluster mode, with real processes on one real `redis-server`: a generated
//! key is shared by every node (sealed in Redis) and rotates across them without a token
//! failing, and the key set never forks when Redis comes back empty.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "cluster/support.rs"]
mod support;

use common::oauth::{call, claims};
use common::redis::Redis;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};
use support::{eventually, password_grant, spec};

async fn jwks_kids(gw: &Gateway) -> Vec<String> {
    let v: Value = reqwest::get(gw.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

fn kid(jwt: &str) -> String {
    use base64::Engine as _;
    let h = jwt.split('.').next().unwrap();
    let v: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .unwrap(),
    )
    .unwrap();
    v["kid"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signing_keys_are_shared_and_rotate_across_nodes() {
    let redis = Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    // Generated keys kept (sealed) in Redis; short times so rotation runs within the test:
    // JWKS cacheable for 1s, a new key published 6s before it signs, tokens live 4s.
    let tokens = "tokens:\n  signing_key: { algorithm: ES256 }\n  jwks_max_age: 1s\n  leeway: 0s\n  rotation: { publish_ahead: 6s }\n";
    let mut n = Vec::new();
    for _ in 0..3 {
        n.push(Gateway::start(spec(&redis, &up, Some(tokens.into()), "4s"), &key).await);
    }
    // One key, the same on every node; the private key is not in Redis in clear.
    let kids = jwks_kids(&n[0]).await;
    assert_eq!(kids.len(), 1);
    for gw in &n {
        assert_eq!(jwks_kids(gw).await, kids);
    }
    let doc = redis.cli(&["HGET", "t:keyset", "doc"]);
    assert!(
        doc.contains("ciphertext") && !doc.contains("\"der\""),
        "{doc}"
    );

    let (before, _) = password_grant(&n[0]).await;
    assert_eq!(kid(&before), kids[0]);
    let out = std::process::Command::new(binary())
        .args(["keys", "rotate", "-c"])
        .arg(&n[2].config_path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_kid = said.split('`').nth(1).unwrap_or_default().to_string();
    assert!(!new_kid.is_empty() && new_kid != kids[0], "{said}");
    let activate_at: i64 = said
        .split("signs from ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(parse_rfc3339)
        .unwrap_or_else(|| panic!("no activation time in: {said}"));

    // Published on every node before anything is signed with it.
    let mut seen_ahead = 0;
    for gw in &n {
        eventually("the new key is in JWKS", || async {
            jwks_kids(gw).await.contains(&new_kid)
        })
        .await;
        let (t, _) = password_grant(gw).await;
        if unix_now() < activate_at {
            assert_eq!(kid(&t), kids[0], "still signed with the old key");
            seen_ahead += 1;
        }
    }
    assert!(
        seen_ahead > 0,
        "the new key was never seen published ahead of signing"
    );
    // Then every node switches to it; the token signed before stays valid everywhere.
    for gw in &n {
        eventually("the node signs with the new key", || async {
            kid(&password_grant(gw).await.0) == new_kid
        })
        .await;
    }
    let still_valid = claims(&before)["exp"].as_i64().unwrap() > unix_now();
    if still_valid {
        for gw in &n {
            assert_eq!(call(gw, "/orders/1", &before).await, 200);
        }
    }
    // Once its last token has expired, the old key leaves JWKS.
    for gw in &n {
        eventually("the old key is retired", || async {
            !jwks_kids(gw).await.contains(&kids[0])
        })
        .await;
    }
    // A node started now gets the current set from Redis.
    n[1].kill();
    n[1].spawn().await;
    assert_eq!(jwks_kids(&n[1]).await, vec![new_kid.clone()]);
    let (t, _) = password_grant(&n[1]).await;
    assert_eq!(call(&n[0], "/orders/1", &t).await, 200);
}

/// `tollgate <args> -c <node's config>`: its exit status and output.
fn command(gw: &Gateway, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(binary())
        .args(args)
        .arg("-c")
        .arg(&gw.config_path)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_signing_key_set_never_forks_when_redis_comes_back_empty() {
    let mut redis = Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    let generated = "tokens:\n  signing_key: { algorithm: ES256 }\n";
    let mut n = Vec::new();
    for _ in 0..3 {
        n.push(Gateway::start(spec(&redis, &up, Some(generated.into()), "15m"), &key).await);
    }
    let (before, _) = password_grant(&n[0]).await;
    let first = jwks_kids(&n[0]).await;
    assert_eq!(first, vec![kid(&before)]);

    // Redis comes back with nothing, and before the nodes write their set back: `keys
    // list` (it only reads), `keys rotate` (it never makes a set from nothing) and a new
    // node start (it makes a set of its own, which the others must not adopt alone).
    redis.restart();
    let (ok, listed) = command(&n[1], &["keys", "list"]);
    assert!(ok, "{listed}");
    assert!(
        listed.contains("no signing key set") || listed.contains(&first[0]),
        "{listed}"
    );
    let (rotated, said) = command(&n[2], &["keys", "rotate"]);
    assert!(rotated || said.contains("no signing key set"), "{said}");
    n.push(Gateway::start(spec(&redis, &up, Some(generated.into()), "15m"), &key).await);

    // Every node ends with one and the same key set, holding the key the tokens issued
    // before were signed with; every node accepts every node's tokens.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut sets = Vec::new();
        for gw in &n {
            let mut k = jwks_kids(gw).await;
            k.sort();
            sets.push(k);
        }
        if sets.iter().all(|s| *s == sets[0]) && sets[0].contains(&first[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "the key sets differ: {sets:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut tokens = vec![before];
    for gw in &n {
        tokens.push(password_grant(gw).await.0);
    }
    for gw in &n {
        for t in &tokens {
            assert_eq!(call(gw, "/orders/1", t).await, 200, "kid {}", kid(t));
        }
    }
    // A node restarted now loads the same set.
    n[0].kill();
    n[0].spawn().await;
    let mut again = jwks_kids(&n[0]).await;
    again.sort();
    let mut other = jwks_kids(&n[1]).await;
    other.sort();
    assert_eq!(again, other);
}
