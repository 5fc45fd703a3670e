//! The other ways in, against the real gateway: API keys (and their removal by a SIGHUP
//! reload), per-consumer rate limits, tokens of external identity providers (a JWKS server
//! that rotates keys, starts late, and a real oidc-provider found by discovery), and RFC
//! 9068 token types. RFC 8693 token exchange is tested in tests/token_exchange.rs, the
//! seed-003 tenant endpoints in tests/tenants.rs.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "idp/corp.rs"]
mod corp;
#[path = "idp/support.rs"]
#[allow(dead_code)]
mod support;

use common::*;
use corp::{CORP, bearer, corp_token, get, issuer_yaml};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{JwksServer, Key, OidcProvider};

/// Run a command of the binary; its stdout.
fn tollgate(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new(binary())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// A new API key and its digest, from `tollgate api-key --generate`.
fn api_key() -> (String, String) {
    let out = tollgate(&["api-key", "--generate"], None);
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_string()
    };
    let (key, sha) = (field("api_key:"), field("sha256:"));
    assert!(key.starts_with("tgk_") && sha.len() == 64, "{out}");
    // Hashing the key again on stdin gives the same digest.
    assert_eq!(
        tollgate(&["api-key"], Some(&format!("{key}\n"))).trim(),
        sha
    );
    (key, sha)
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn catalog(up: &Upstream, extra: &str) -> String {
    format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{addr}"] }}
    auth: [jwt, api_key]
    rate_limit: {{ requests: 2, per: 1m, burst: 3 }}
    rules:
      - {{ methods: [GET], path: "/orders/**", all_of: [orders:read] }}
      - {{ methods: [POST], path: "/orders/bulk", all_of: [orders:write], rate_limit: {{ requests: 1, per: 1m }} }}
  - name: reports
    prefix: /reports
    upstream: {{ servers: ["{addr}"] }}
    auth: api_key
    api_key_header: x-report-key
    rules: [{{ methods: [GET], path: "/reports/**", all_of: [reports:read] }}]
{extra}"#,
        addr = up.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_keys_open_their_credentials_apis_and_go_on_reload() {
    let up = start_upstream().await;
    let (key, sha) = api_key();
    let (other_key, other_sha) = api_key();
    let (unlisted, _) = api_key();
    let credentials = |keys: &str| {
        format!(
            r#"
credentials:
  - client_id: shop
    client_secret_hash: "{h}"
    acl: [orders, reports]
    roles: [orders:read, reports:read]
    api_keys: [{keys}]
  - client_id: intern
    client_secret_hash: "{h}"
    acl: [orders]
    roles: [orders:read]
    api_keys: [{{ name: k, sha256: {other_sha} }}]
"#,
            h = cheap_hash("s")
        )
    };
    let gw = Gateway::start(
        GatewaySpec::new(catalog(
            &up,
            &credentials(&format!("{{ name: main, sha256: {sha} }}")),
        )),
        &TestKey::generate(),
    )
    .await;
    let r = get(&gw, "/orders/1", &[("x-api-key", &key)]).await;
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(echoed["headers"]["x-api-key"], key, "forwarded upstream");
    // Its own header on the other API.
    assert_eq!(
        get(&gw, "/reports/q", &[("x-report-key", &key)])
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&gw, "/reports/q", &[("x-api-key", &key)])
            .await
            .status(),
        401
    );
    // Scope rules: the credential's roles lack orders:write.
    let r = reqwest::Client::new()
        .post(gw.url("/orders/bulk"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A key of a credential without the API in its ACL.
    assert_eq!(
        get(&gw, "/reports/q", &[("x-report-key", &other_key)])
            .await
            .status(),
        401
    );
    // An unknown key.
    let r = get(&gw, "/orders/1", &[("x-api-key", &unlisted)]).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_api_key");
    let r = get(&gw, "/reports/q", &[]).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("header=\"x-report-key\""),
        "{:?}",
        r.headers()
    );
    assert!(
        gw.metric("tollgate_token_validations_total{outcome=\"unknown_api_key\"}")
            .await
            >= 1.0
    );

    // Removed from the config: refused after a reload, same process.
    let pid = gw.pid();
    let path = gw.dir.path().join("upstreams.yaml");
    std::fs::write(&path, catalog(&up, &credentials(""))).unwrap();
    gw.signal("HUP");
    assert!(
        gw.wait_for_log("reloaded the upstreams file").await,
        "{}",
        gw.log()
    );
    assert_eq!(
        get(&gw, "/orders/1", &[("x-api-key", &key)]).await.status(),
        401
    );
    assert_eq!(gw.pid(), pid);
    // A broken file is refused and the running configuration stays.
    std::fs::write(&path, "apis: [ {").unwrap();
    gw.signal("HUP");
    assert!(gw.wait_for_log("reload refused").await);
    assert_eq!(
        get(&gw, "/orders/1", &[("x-api-key", &other_key)])
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_count_per_consumer_whatever_the_credential() {
    let up = start_upstream().await;
    let (key, sha) = api_key();
    let extra = format!(
        r#"
credentials:
  - client_id: shop
    client_secret_hash: "{h}"
    acl: [orders]
    roles: [orders:read, orders:write]
    api_keys: [{{ name: main, sha256: {sha} }}]
  - client_id: other
    client_secret_hash: "{h}"
    acl: [orders]
    roles: [orders:read]
"#,
        h = cheap_hash("s")
    );
    let gw = Gateway::start(GatewaySpec::new(catalog(&up, &extra)), &TestKey::generate()).await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = get(&gw, "/orders/1", &[("x-api-key", &key)]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-limit"], "3");
        assert_eq!(r.headers()["ratelimit-policy"], "2;w=60;burst=3");
        remaining.push(
            r.headers()["ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let r = get(&gw, "/orders/1", &[("x-api-key", &key)]).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    // The same consumer with a bearer token is the same allowance.
    let jwt = access_token(&gw, "/credential/jwt", "shop", "s").await;
    let r = get(
        &gw,
        "/orders/1",
        &[("authorization", &format!("Bearer {jwt}"))],
    )
    .await;
    assert_eq!(r.status(), 429);
    // Another consumer has its own.
    let jwt = access_token(&gw, "/credential/jwt", "other", "s").await;
    let r = get(
        &gw,
        "/orders/1",
        &[("authorization", &format!("Bearer {jwt}"))],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        gw.metric("tollgate_rate_limited_total{api=\"orders\"}")
            .await
            >= 2.0,
        "{}",
        gw.metrics().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operation_limit_applies_on_top_of_the_apis() {
    let up = start_upstream().await;
    let extra = format!(
        r#"
credentials:
  - client_id: shop
    client_secret_hash: "{}"
    acl: [orders]
    roles: [orders:read, orders:write]
"#,
        cheap_hash("s")
    );
    let gw = Gateway::start(GatewaySpec::new(catalog(&up, &extra)), &TestKey::generate()).await;
    let jwt = access_token(&gw, "/credential/jwt", "shop", "s").await;
    let post = || {
        reqwest::Client::new()
            .post(gw.url("/orders/bulk"))
            .bearer_auth(&jwt)
            .send()
    };
    let first = post().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.headers()["ratelimit-limit"],
        "1",
        "the tighter limit is shown"
    );
    assert_eq!(post().await.unwrap().status(), 429);
    // The API's own allowance still has room for other operations.
    let r = get(
        &gw,
        "/orders/1",
        &[("authorization", &format!("Bearer {jwt}"))],
    )
    .await;
    assert_eq!(r.status(), 200);
}

fn external_catalog(up: &Upstream, issuers: &str) -> String {
    format!(
        r#"
issuers:
{issuers}
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{addr}"] }}
    auth: jwt
    issuers: [tollgate, corp]
    rules: [{{ methods: [GET], path: "/orders/**", all_of: [orders:read] }}]
  - name: billing
    prefix: /billing
    upstream: {{ servers: ["{addr}"] }}
    auth: jwt
credentials:
  - client_id: shop
    client_secret_hash: "{h}"
    acl: [orders, billing]
    roles: [orders:read]
"#,
        addr = up.addr,
        h = cheap_hash("s")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn external_issuers_tokens_open_the_apis_that_trust_them() {
    let up = start_upstream().await;
    let k1 = Key::es256("corp-1");
    // The IdP is down when the gateway starts: it starts anyway.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}/jwks");
    let gw = Gateway::start(
        GatewaySpec::new(external_catalog(&up, &issuer_yaml("corp", CORP, &url, ""))),
        &TestKey::generate(),
    )
    .await;
    let token = corp_token(&k1, json!({}));
    assert_eq!(bearer(&gw, "/orders/1", &token).await, 401);
    assert!(gw.wait_for_log("corp").await, "the missing keys are logged");
    let jwks = JwksServer::start_on(addr, &[&k1]).await;
    eventually("the keys arrive", || async {
        bearer(&gw, "/orders/1", &token).await == 200
    })
    .await;
    // Scopes come from realm_access.roles: without orders:read, 403.
    let no_role = corp_token(&k1, json!({"realm_access": {"roles": ["other"]}}));
    assert_eq!(bearer(&gw, "/orders/1", &no_role).await, 403);
    // An API that trusts only the gateway's own tokens refuses it.
    assert_eq!(bearer(&gw, "/billing/1", &token).await, 401);
    // Wrong audience, expired, another issuer's key, HS256.
    assert_eq!(
        bearer(
            &gw,
            "/orders/1",
            &corp_token(&k1, json!({"aud": "someone-else"}))
        )
        .await,
        401
    );
    assert_eq!(
        bearer(
            &gw,
            "/orders/1",
            &corp_token(&k1, json!({"exp": support::unix_now() - 120}))
        )
        .await,
        401
    );
    let stranger = Key::es256("corp-1");
    assert_eq!(
        bearer(&gw, "/orders/1", &corp_token(&stranger, json!({}))).await,
        401
    );
    let other_iss = k1.token("https://elsewhere.test", json!({"aud": "tollgate-client"}));
    assert_eq!(bearer(&gw, "/orders/1", &other_iss).await, 401);

    // The IdP rotates: a token with the new kid costs one refetch.
    let k2 = Key::rs256("corp-2");
    jwks.serve(&[&k1, &k2]);
    let before = jwks.requests();
    // Past the cooldown of the last fetch.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let rotated = corp_token(&k2, json!({}));
    assert_eq!(bearer(&gw, "/orders/1", &rotated).await, 200);
    assert_eq!(jwks.requests() - before, 1);

    // A flood of unknown kids: at most one fetch per cooldown (2 s), however many.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let before = jwks.requests();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..500 {
        let t = k1.token_with_kid(
            &format!("nope-{i}"),
            CORP,
            json!({"aud": "tollgate-client"}),
        );
        let url = gw.url("/orders/1");
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let fetches = jwks.requests() - before;
    let allowed = 1 + start.elapsed().as_secs() / 2;
    println!(
        "flood of 500 unknown kids: {fetches} JWKS fetches in {:?} (cooldown 2s)",
        start.elapsed()
    );
    assert!((1..=allowed).contains(&fetches), "{fetches} fetches");
    // The gateway's own tokens still open the API.
    let own = access_token(&gw, "/credential/jwt", "shop", "s").await;
    assert_eq!(bearer(&gw, "/orders/1", &own).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_oidc_provider_found_by_discovery() {
    let idp = OidcProvider::start("gw-client", "gw-secret", "urn:orders", "orders:read").await;
    let up = start_upstream().await;
    let issuers = format!(
        r#"
  - name: corp
    issuer: "{iss}"
    audiences: [urn:orders]
    algorithms: [ES256, RS256, PS256, EdDSA]
"#,
        iss = idp.issuer
    );
    let gw = Gateway::start(
        GatewaySpec::new(external_catalog(&up, &issuers)),
        &TestKey::generate(),
    )
    .await;
    let token = idp
        .token("gw-client", "gw-secret", "urn:orders", "orders:read")
        .await;
    eventually("a provider token opens the API", || async {
        bearer(&gw, "/orders/1", &token).await == 200
    })
    .await;
    assert_eq!(bearer(&gw, "/billing/1", &token).await, 401);
}

#[tokio::test]
async fn id_tokens_are_not_access_tokens() {
    let up = start_upstream().await;
    let key = TestKey::generate();
    let unreachable = issuer_yaml("corp", CORP, "http://127.0.0.1:9/jwks", "");
    let gw = Gateway::start(GatewaySpec::new(external_catalog(&up, &unreachable)), &key).await;
    // What tollgate signs as an access token says so.
    let at = access_token(&gw, "/credential/jwt", "shop", "s").await;
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            at.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "at+jwt");
    // Signed by the gateway's key as an ID token (typ JWT, no grant id): refused.
    let now = unix_now();
    let id_token = key.sign(
        &json!({"alg": "ES256", "typ": "JWT", "kid": "test-key"}),
        &json!({"iss": gw.base, "sub": "shop", "aud": "orders", "exp": now + 300,
                "iat": now, "client_id": "shop", "scope": "orders:read", "nonce": "n"}),
    );
    let r = get(
        &gw,
        "/orders/1",
        &[("authorization", &format!("Bearer {id_token}"))],
    )
    .await;
    assert_eq!(r.status(), 401);
    assert!(
        gw.metric("tollgate_token_validations_total{outcome=\"wrong_type\"}")
            .await
            >= 1.0
    );
    // A token issued before tollgate typed its access tokens (typ JWT, with its grant id).
    let legacy = key.sign(
        &json!({"alg": "ES256", "typ": "JWT", "kid": "test-key"}),
        &json!({"iss": gw.base, "sub": "shop", "aud": "orders", "exp": now + 300,
                "iat": now, "client_id": "shop", "scope": "orders:read", "gid": "g-old", "jti": "j"}),
    );
    assert_eq!(bearer(&gw, "/orders/1", &legacy).await, 200);
}
