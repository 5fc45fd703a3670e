//! External identity providers against real servers: a tiny JWKS server that rotates keys,
//! fails and starts late, and a real OpenID provider (oidc-provider on Node.js) found by
//! discovery. Covers start with the provider down, key rotation, a flood of unknown kids,
//! stale keys on a failed refresh, and every refusal.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "idp/support.rs"]
mod support;

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tollgate::config::{IssuerSettings, KeySource};
use tollgate::domain::jose::JwsAlg;
use tollgate::idp::{Rejection, StatsSnapshot};

const LONG: Duration = Duration::from_secs(300);

fn stats(r: &Running, name: &str) -> StatsSnapshot {
    r.issuers.by_name(name).unwrap().stats().snapshot()
}

#[tokio::test]
async fn genuine_tokens_verify_with_each_issuers_keys() {
    let (ec, rsa) = (Key::es256("a-1"), Key::rs256("b-1"));
    let (a, b) = (
        JwksServer::start(&[&ec]).await,
        JwksServer::start(&[&rsa]).await,
    );
    let r = run(vec![
        issuer("a", "https://a.example", &a.url(), LONG),
        issuer("b", "https://b.example", &b.url(), LONG),
    ]);
    until("keys of both issuers", || {
        r.issuers.iter().all(|i| i.has_keys())
    })
    .await;
    let now = unix_now();
    let t = r
        .issuers
        .verify(&ec.token("https://a.example", json!({"jti": "j"})), now)
        .await
        .unwrap();
    assert_eq!((&*t.issuer_name, t.subject.as_str()), ("a", "user-1"));
    assert_eq!(t.scopes.to_space_separated(), "orders:read");
    assert_eq!(t.jti.as_deref(), Some("j"));
    let t = r
        .issuers
        .verify(&rsa.token("https://b.example", json!({})), now)
        .await
        .unwrap();
    assert_eq!(&*t.issuer_name, "b");
    assert_eq!((a.requests(), b.requests()), (1, 1));
    let s = stats(&r, "a");
    assert_eq!((s.fetches_ok, s.fetches_failed, s.keys), (1, 0, 1));
}

#[tokio::test]
async fn oidc_provider_tokens_verify_through_discovery() {
    let (client, secret, resource) = ("orders-app", "s3cret", "urn:tollgate:orders");
    let idp = OidcProvider::start(client, secret, resource, "orders:read").await;
    let mut s = IssuerSettings::new(
        "oidc",
        &idp.issuer,
        KeySource::Discovery,
        vec![resource.into()],
    );
    s.algorithms = vec![JwsAlg::ES256];
    s.typ = Some("at+jwt".into());
    // The same provider under an issuer that is not exactly its own: discovery refuses.
    let mut wrong = s.clone();
    wrong.name = "slash".into();
    wrong.issuer = format!("{}/", idp.issuer);
    let r = run(vec![s, wrong]);
    let oidc = r.issuers.by_name("oidc").unwrap().clone();
    until("the provider's keys", || oidc.has_keys()).await;
    let token = idp.token(client, secret, resource, "orders:read").await;
    let t = r.issuers.verify(&token, unix_now()).await.unwrap();
    assert_eq!(&*t.issuer_name, "oidc");
    assert_eq!(t.subject, client);
    assert_eq!(t.client_id.as_deref(), Some(client));
    assert_eq!(t.audiences, [resource]);
    assert_eq!(t.scopes.to_space_separated(), "orders:read");
    assert_eq!(t.claims["iss"], idp.issuer.as_str());
    let later = unix_now() + 3600;
    assert_eq!(oidc.verify(&token, later).await, Err(Rejection::Expired));
    until("the refused discovery", || {
        stats(&r, "slash").fetches_failed > 0
    })
    .await;
    assert!(!r.issuers.by_name("slash").unwrap().has_keys());
}

#[tokio::test]
async fn a_provider_down_at_start_is_waited_for() {
    capture_logs();
    let key = Key::es256("k1");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("http://{port}/jwks");
    let r = run(vec![issuer("late", "https://late.example", &url, LONG)]);
    let late = r.issuers.by_name("late").unwrap().clone();
    until("failed fetches", || {
        late.stats().snapshot().fetches_failed > 2
    })
    .await;
    let token = key.token("https://late.example", json!({}));
    assert_eq!(
        late.verify(&token, unix_now()).await,
        Err(Rejection::NoKeysYet)
    );
    assert!(!late.has_keys());
    // The provider comes up: the retries find it.
    let server = JwksServer::start_on(port, &[&key]).await;
    until("keys after the provider came up", || late.has_keys()).await;
    assert!(late.verify(&token, unix_now()).await.is_ok());
    let s = late.stats().snapshot();
    assert!(s.fetches_failed > 2 && s.fetches_ok == 1, "{s:?}");
    assert_eq!(server.requests(), 1);
    // One warning for the whole failure streak, naming the issuer, the URL and the 401s;
    // one line when the keys arrive; the token in none.
    let warned = logged(log::Level::Warn, "issuer late:");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains(&url) && warned[0].contains("401 until keys arrive"));
    // (Logged just after the keys are installed: wait for the line, then count.)
    until("the arrival logged", || {
        !logged(log::Level::Info, "issuer late:").is_empty()
    })
    .await;
    let arrived = logged(log::Level::Info, "issuer late:");
    assert_eq!(arrived.len(), 1, "{arrived:?}");
    assert!(arrived[0].contains("tokens are accepted"), "{arrived:?}");
    assert!(!logged_anywhere(&token));
}

#[tokio::test]
async fn redirects_stay_within_one_scheme() {
    capture_logs();
    let key = Key::es256("k");
    let server = JwksServer::start(&[&key]).await;
    let moved = format!("http://{}/moved", server.addr);
    let to_https = format!("http://{}/to-https", server.addr);
    let r = run(vec![
        issuer("moved", "https://moved.example", &moved, LONG),
        issuer("to-https", "https://to-https.example", &to_https, LONG),
    ]);
    until("keys through the redirect", || {
        r.issuers.by_name("moved").unwrap().has_keys()
    })
    .await;
    until("the refused redirect", || {
        stats(&r, "to-https").fetches_failed > 0
    })
    .await;
    assert!(!r.issuers.by_name("to-https").unwrap().has_keys());
    until("the warning", || {
        !logged(log::Level::Warn, "issuer to-https:").is_empty()
    })
    .await;
    let warned = logged(log::Level::Warn, "issuer to-https:");
    assert!(
        warned[0].contains("a redirect to another scheme"),
        "{warned:?}"
    );
}

#[tokio::test]
async fn a_rotated_key_is_found_with_exactly_one_refetch() {
    let (old, new) = (Key::es256("2024"), Key::es256("2025"));
    let server = JwksServer::start(&[&old]).await;
    let cooldown = Duration::from_millis(300);
    let r = run(vec![issuer(
        "rot",
        "https://rot.example",
        &server.url(),
        cooldown,
    )]);
    let rot = r.issuers.by_name("rot").unwrap().clone();
    until("the first key set", || rot.has_keys()).await;
    server.serve(&[&old, &new]);
    until("the cooldown after the first fetch", || {
        rot.refetch_cooldown_remaining().is_zero()
    })
    .await;
    let t = rot
        .verify(&new.token("https://rot.example", json!({})), unix_now())
        .await;
    assert!(t.is_ok(), "{t:?}");
    assert_eq!(server.requests(), 2, "the first fetch and one refetch");
    let s = rot.stats().snapshot();
    assert_eq!((s.kid_miss_refetches, s.fetches_ok, s.keys), (1, 2, 2));
    // Both keys now verify, without another fetch.
    assert!(
        rot.verify(&old.token("https://rot.example", json!({})), unix_now())
            .await
            .is_ok()
    );
    assert_eq!(server.requests(), 2);
}

/// Verify 1,000 tokens with distinct unknown kids at once; the JWKS requests they caused.
async fn flood(r: &Running, key: &Key, round: usize) -> (u64, Duration, StatsSnapshot) {
    let issuer = r.issuers.by_name("flood").unwrap().clone();
    let before = issuer.stats().snapshot();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let token = key.token_with_kid(
            &format!("unknown-{round}-{i}"),
            "https://flood.example",
            json!({}),
        );
        let issuer = Arc::clone(&issuer);
        tasks.spawn(async move { issuer.verify(&token, unix_now()).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap(), Err(Rejection::UnknownKey));
    }
    let after = issuer.stats().snapshot();
    let misses = (after.kid_miss_refetches - before.kid_miss_refetches)
        + (after.kid_miss_joined - before.kid_miss_joined)
        + (after.refetches_suppressed - before.refetches_suppressed);
    assert_eq!(misses, 1000, "each miss is counted once");
    let delta = StatsSnapshot {
        kid_miss_refetches: after.kid_miss_refetches - before.kid_miss_refetches,
        kid_miss_joined: after.kid_miss_joined - before.kid_miss_joined,
        refetches_suppressed: after.refetches_suppressed - before.refetches_suppressed,
        ..after
    };
    (delta.kid_miss_refetches, started.elapsed(), delta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_fetches_at_most_once_per_cooldown() {
    let key = Key::es256("real");
    let server = JwksServer::start(&[&key]).await;
    let cooldown = Duration::from_secs(3);
    let r = run(vec![issuer(
        "flood",
        "https://flood.example",
        &server.url(),
        cooldown,
    )]);
    let issuer = r.issuers.by_name("flood").unwrap().clone();
    until("the first key set", || issuer.has_keys()).await;
    // Bound: fetch starts are at least a cooldown apart.
    let at_most = |elapsed: Duration| 1 + (elapsed.as_secs_f64() / cooldown.as_secs_f64()) as u64;

    // Right after the start-up fetch: within its cooldown, misses are refused at once.
    let served = server.requests();
    let (refetches, elapsed, delta) = flood(&r, &key, 1).await;
    let fetched = server.requests() - served;
    println!(
        "kid-miss flood within the cooldown: 1000 distinct unknown kids -> {fetched} JWKS fetches \
         in {elapsed:?} (cooldown {cooldown:?}; suppressed {}, joined {})",
        delta.refetches_suppressed, delta.kid_miss_joined
    );
    assert_eq!(fetched, refetches);
    assert!(
        fetched <= at_most(elapsed),
        "{fetched} fetches in {elapsed:?}"
    );

    // Once the cooldown has passed: the first miss refetches, the others share it.
    until("the cooldown", || {
        issuer.refetch_cooldown_remaining().is_zero()
    })
    .await;
    let served = server.requests();
    let (refetches, elapsed, delta) = flood(&r, &key, 2).await;
    let fetched = server.requests() - served;
    println!(
        "kid-miss flood after the cooldown: 1000 distinct unknown kids -> {fetched} JWKS fetches \
         in {elapsed:?} (cooldown {cooldown:?}; suppressed {}, joined {})",
        delta.refetches_suppressed, delta.kid_miss_joined
    );
    assert_eq!(fetched, refetches);
    assert!(fetched >= 1, "the cooldown had passed: one refetch");
    assert!(
        fetched <= at_most(elapsed),
        "{fetched} fetches in {elapsed:?}"
    );
    // The real key still verifies, from the cache.
    let served = server.requests();
    assert!(
        issuer
            .verify(&key.token("https://flood.example", json!({})), unix_now())
            .await
            .is_ok()
    );
    assert_eq!(server.requests(), served);
}

#[tokio::test]
async fn a_failing_refresh_keeps_the_old_keys() {
    let key = Key::es256("k");
    let server = JwksServer::start(&[&key]).await;
    // max-age=1: the loop refreshes every second (the minimum lifetime here).
    server.cache_control(Some("max-age=1"));
    let r = run(vec![issuer(
        "stale",
        "https://stale.example",
        &server.url(),
        LONG,
    )]);
    let stale = r.issuers.by_name("stale").unwrap().clone();
    until("the first key set", || stale.has_keys()).await;
    let token = key.token("https://stale.example", json!({}));
    let too_big = format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(2 << 20));
    let broken: [(u16, Vec<u8>); 4] = [
        (500, b"oops".to_vec()),
        (200, br#"{"keys": []}"#.to_vec()),
        (200, b"<html>not json</html>".to_vec()),
        (200, too_big.into_bytes()),
    ];
    for (i, (status, body)) in broken.into_iter().enumerate() {
        server.serve_raw(status, body);
        let failed = stale.stats().snapshot().fetches_failed;
        until("a failed refresh", || {
            stale.stats().snapshot().fetches_failed > failed
        })
        .await;
        assert!(stale.has_keys(), "case {i}");
        assert!(stale.verify(&token, unix_now()).await.is_ok(), "case {i}");
    }
    // The provider recovers: the next refresh replaces the keys again.
    let rotated = Key::es256("k2");
    let ok = stale.stats().snapshot().fetches_ok;
    server.serve(&[&rotated]);
    until("the recovered refresh", || {
        stale.stats().snapshot().fetches_ok > ok
    })
    .await;
    let fresh = rotated.token("https://stale.example", json!({}));
    assert!(stale.verify(&fresh, unix_now()).await.is_ok());
    assert_eq!(
        stale.verify(&token, unix_now()).await,
        Err(Rejection::UnknownKey),
        "the retired key is gone"
    );
}

#[tokio::test]
async fn tokens_are_refused_for_the_right_reason() {
    let (a_key, b_key, a_rsa) = (Key::es256("a"), Key::es256("b"), Key::rs256("a-rsa"));
    let a = JwksServer::start(&[&a_key, &a_rsa]).await;
    let b = JwksServer::start(&[&b_key]).await;
    let mut only_es = issuer("a", "https://a.example", &a.url(), LONG);
    only_es.algorithms = vec![JwsAlg::ES256];
    only_es.typ = Some("at+jwt".into());
    let r = run(vec![
        only_es,
        issuer("b", "https://b.example", &b.url(), LONG),
    ]);
    until("keys", || r.issuers.iter().all(|i| i.has_keys())).await;
    let (iss_a, iss_b) = ("https://a.example", "https://b.example");
    let now = unix_now();
    let verify = |t: String| {
        let issuers = r.issuers.clone();
        async move { issuers.verify(&t, now).await.err() }
    };
    // Another issuer's key, claiming to be A: A's keys do not have it.
    assert_eq!(
        verify(b_key.token(iss_a, json!({}))).await,
        Some(Rejection::UnknownKey)
    );
    // A's key, but the token names B: B's keys decide, and do not have it.
    assert_eq!(
        verify(a_key.token(iss_b, json!({}))).await,
        Some(Rejection::UnknownKey)
    );
    // ... and given to A directly, the `iss` is not A's.
    let issuer_a = r.issuers.by_name("a").unwrap();
    assert_eq!(
        issuer_a.verify(&a_key.token(iss_b, json!({})), now).await,
        Err(Rejection::WrongIssuer)
    );
    assert_eq!(
        verify(a_key.token("https://unknown.example", json!({}))).await,
        Some(Rejection::UnknownIssuer)
    );
    assert_eq!(
        verify(a_key.token(iss_a, json!({"aud": "billing"}))).await,
        Some(Rejection::WrongAudience)
    );
    assert_eq!(
        verify(a_key.token(iss_a, json!({"exp": now - 3600}))).await,
        Some(Rejection::Expired)
    );
    // A valid RS256 token, from a key A publishes, when A allows only ES256.
    assert_eq!(
        verify(a_rsa.token(iss_a, json!({}))).await,
        Some(Rejection::AlgorithmNotAllowed)
    );
    let jwt_typ = a_key.sign(
        &json!({"alg": "ES256", "typ": "JWT", "kid": "a"}),
        &json!({"iss": iss_a, "sub": "s", "aud": "orders", "exp": now + 60}),
    );
    assert_eq!(verify(jwt_typ).await, Some(Rejection::WrongType));
    for alg in ["HS256", "none"] {
        let forged = forge(alg, iss_a, now);
        assert_eq!(verify(forged).await, Some(Rejection::Malformed), "{alg}");
    }
    assert!(verify(a_key.token(iss_a, json!({}))).await.is_none());
    // None of these fetched anything but the start-up set... save the misses, which the
    // cooldown (five minutes here) refused at once.
    assert_eq!((a.requests(), b.requests()), (1, 1));
}

/// An HMAC or unsigned token, as an attacker would write it.
fn forge(alg: &str, iss: &str, now: i64) -> String {
    use base64::Engine as _;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.c2ln",
        b64(json!({"alg": alg, "typ": "at+jwt", "kid": "a"})),
        b64(json!({"iss": iss, "sub": "s", "aud": "orders", "exp": now + 60}))
    )
}

/// As under Pingora: the refresh loop on a runtime of its own (a background service's),
/// the requests on another. The kid-miss refetch crosses between them.
#[tokio::test]
async fn the_loop_and_the_requests_may_run_on_different_runtimes() {
    let (old, new) = (Key::es256("old"), Key::es256("new"));
    let server = JwksServer::start(&[&old]).await;
    let cooldown = Duration::from_millis(200);
    let settings = issuer("apart", "https://apart.example", &server.url(), cooldown);
    let issuers = Arc::new(tollgate::idp::Issuers::new(vec![settings]).unwrap());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let background = {
        let issuers = issuers.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(issuers.run(shutdown))
        })
    };
    let apart = issuers.by_name("apart").unwrap().clone();
    until("the first key set", || apart.has_keys()).await;
    server.serve(&[&old, &new]);
    until("the cooldown", || {
        apart.refetch_cooldown_remaining().is_zero()
    })
    .await;
    let t = apart
        .verify(&new.token("https://apart.example", json!({})), unix_now())
        .await;
    assert!(t.is_ok(), "{t:?}");
    assert_eq!(server.requests(), 2);
    stop.send(true).unwrap();
    tokio::task::spawn_blocking(move || background.join().unwrap())
        .await
        .unwrap();
}
