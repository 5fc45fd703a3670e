//! The gateway end to end: a token from the token endpoint, checked against the published
//! JWKS, then protected and unprotected calls through the proxy to a real upstream.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn catalog(upstream: &Upstream) -> String {
    let addr = upstream.addr;
    format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{addr}"] }}
    auth: jwt
    rules:
      - {{ methods: [GET, HEAD], path: "/orders/**", all_of: [orders:read] }}
      - {{ methods: [POST, PUT, DELETE], path: "/orders/**", all_of: [orders:write] }}
  - name: billing
    prefix: /billing
    strip_prefix: true
    upstream: {{ servers: ["{addr}"], host_header: upstream }}
    auth: jwt
  - name: public
    prefix: /public
    strip_prefix: true
    upstream: {{ servers: ["{addr}"], host_header: {{ set: public.internal }} }}
    auth: none
policies:
  - name: orders-policy
    apis: [orders]
    client_id: policy-key
    client_secret_hash: "{policy}"
    scopes: [orders:read]
credentials:
  - client_id: reader
    client_secret_hash: "{reader}"
    acl: [orders, billing]
    roles: [orders:read, orders:write, billing:read]
"#,
        policy = cheap_hash("policy-secret"),
        reader = cheap_hash("reader-secret"),
    )
}

async fn start() -> (Upstream, Gateway, TestKey) {
    let upstream = start_upstream().await;
    let key = TestKey::generate();
    let gw = Gateway::start(GatewaySpec::new(catalog(&upstream)), &key).await;
    (upstream, gw, key)
}

async fn get(gw: &Gateway, path: &str, auth: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(gw.url(path));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn token_verifies_against_jwks_and_opens_the_protected_api() {
    let (_up, gw, _key) = start().await;

    // Discovery names the token endpoint and the JWKS.
    let meta: Value = reqwest::get(gw.url("/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], gw.base);
    assert_eq!(meta["token_endpoint"], gw.url("/credential/jwt"));
    let jwks_uri = meta["jwks_uri"].as_str().unwrap().to_string();

    let r = get_token(
        &gw,
        "/credential/jwt",
        "reader",
        "reader-secret",
        Some("orders:read"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "orders:read");
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().unwrap();

    // Verify it with an independent implementation against the published JWKS.
    let jwks: jsonwebtoken::jwk::JwkSet =
        reqwest::get(&jwks_uri).await.unwrap().json().await.unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid is published");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["orders", "billing"]);
    validation.set_issuer(&[&gw.base]);
    let data = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap();
    let c = data.claims;
    assert_eq!(c["sub"], "reader");
    assert_eq!(c["client_id"], "reader");
    assert_eq!(c["aud"], json!(["orders", "billing"]));
    assert_eq!(c["scope"], "orders:read");
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 22));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    assert_eq!(c["nbf"], c["iat"]);

    // The protected call goes through, with forwarding headers.
    let r = get(&gw, "/orders/42?x=1", Some(&format!("Bearer {token}"))).await;
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["path"], "/orders/42");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "http");
    assert_eq!(echo["headers"]["host"], format!("127.0.0.1:{}", gw.port));

    // Without the token it is refused.
    let r = get(&gw, "/orders/42", None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(challenge(&r), "Bearer realm=\"tollgate\"");
}

#[tokio::test]
async fn each_bad_token_gets_its_rfc6750_answer() {
    let (_up, gw, key) = start().await;
    let iss = gw.base.clone();
    let now = unix_now();
    let good = key.token(&iss, json!({}));
    let other_key = TestKey::generate();

    let alg_none = {
        use base64::Engine as _;
        let b = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            b(json!({"alg": "none", "typ": "JWT"})),
            b(json!({"iss": iss, "aud": "orders", "exp": now + 300, "scope": "orders:read"}))
        )
    };
    let cases: Vec<(&str, Option<String>, StatusCode, &str)> = vec![
        ("no token", None, StatusCode::UNAUTHORIZED, ""),
        (
            "garbage",
            Some("Bearer not-a-token".into()),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            "bad signature",
            Some(format!("Bearer {}", other_key.token(&iss, json!({})))),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            "alg none",
            Some(format!("Bearer {alg_none}")),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                key.token(&iss, json!({"exp": now - 3600}))
            )),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            "wrong issuer",
            Some(format!(
                "Bearer {}",
                key.token("https://other.example", json!({}))
            )),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            "wrong audience",
            Some(format!(
                "Bearer {}",
                key.token(&iss, json!({"aud": "billing"}))
            )),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            "missing scope",
            Some(format!(
                "Bearer {}",
                key.token(&iss, json!({"scope": "billing:read"}))
            )),
            StatusCode::FORBIDDEN,
            "insufficient_scope",
        ),
        ("good", Some(format!("Bearer {good}")), StatusCode::OK, ""),
        ("good, bare header", Some(good.clone()), StatusCode::OK, ""),
    ];
    for (name, auth, status, error) in cases {
        let r = get(&gw, "/orders/1", auth.as_deref()).await;
        assert_eq!(r.status(), status, "{name}");
        let www = challenge(&r);
        if status == StatusCode::OK {
            assert!(www.is_empty(), "{name}");
        } else if error.is_empty() {
            assert_eq!(www, "Bearer realm=\"tollgate\"", "{name}");
        } else {
            assert!(
                www.starts_with("Bearer realm=\"tollgate\", error=\""),
                "{name}: {www}"
            );
            assert!(www.contains(&format!("error=\"{error}\"")), "{name}: {www}");
        }
        if error == "insufficient_scope" {
            assert!(www.contains("scope=\"orders:read\""), "{www}");
        }
    }
    // A write needs orders:write: the read token is not enough.
    let r = reqwest::Client::new()
        .post(gw.url("/orders"))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(challenge(&r).contains("scope=\"orders:write\""));

    for (outcome, at_least) in [
        ("ok", 2.0),
        ("missing", 1.0),
        ("malformed", 2.0),
        ("unknown_key", 0.0),
        ("bad_signature", 0.0),
        ("expired", 1.0),
        ("wrong_issuer", 1.0),
        ("wrong_audience", 1.0),
        ("insufficient_scope", 2.0),
    ] {
        let v = gw
            .metric(&format!(
                "tollgate_token_validations_total{{outcome=\"{outcome}\"}}"
            ))
            .await;
        assert!(v >= at_least, "{outcome}: {v}");
    }
    // The other key's token is refused either as an unknown kid or a bad signature.
    let refused = gw
        .metric("tollgate_token_validations_total{outcome=\"bad_signature\"}")
        .await
        + gw.metric("tollgate_token_validations_total{outcome=\"unknown_key\"}")
            .await;
    assert!(refused >= 1.0);
    // The good token was verified once and then served from the cache.
    assert!(gw.metric("tollgate_validation_cache_hits_total").await >= 1.0);
}

#[tokio::test]
async fn a_policy_token_opens_only_the_apis_of_its_policy() {
    let (_up, gw, _key) = start().await;
    let token = access_token(&gw, "/auth/jwt", "policy-key", "policy-secret").await;
    assert_eq!(
        get(&gw, "/orders/1", Some(&format!("Bearer {token}")))
            .await
            .status(),
        200
    );
    let r = get(&gw, "/billing/1", Some(&format!("Bearer {token}"))).await;
    assert_eq!(r.status(), 401);
    assert!(challenge(&r).contains("invalid_token"));
    // Policy keys are not credentials, and the reverse.
    assert_eq!(
        get_token(&gw, "/credential/jwt", "policy-key", "policy-secret", None)
            .await
            .status(),
        401
    );
    assert_eq!(
        get_token(&gw, "/auth/jwt", "reader", "reader-secret", None)
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn routing_prefixes_hosts_and_unknown_paths() {
    let (_up, gw, _key) = start().await;
    // Unprotected API: prefix stripped, Host set by the API.
    let r = get(&gw, "/public/a/b", None).await;
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["path"], "/a/b");
    assert_eq!(echo["headers"]["host"], "public.internal");
    let echo: Value = get(&gw, "/public", None).await.json().await.unwrap();
    assert_eq!(echo["path"], "/");

    // host_header: upstream sends the server's configured host:port.
    let token = access_token(&gw, "/credential/jwt", "reader", "reader-secret").await;
    let echo: Value = get(&gw, "/billing/x", Some(&format!("Bearer {token}")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(echo["path"], "/x");
    assert_eq!(echo["headers"]["host"], _up.addr.to_string());

    // Dot segments are resolved before routing; what is checked is what is sent.
    let echo: Value = get(&gw, "/public/x/../y", None).await.json().await.unwrap();
    assert_eq!(echo["path"], "/y");
    let r = get(&gw, "/public/..%2f..%2fetc", None).await;
    assert_eq!(r.status(), 400);
    let r = get(&gw, "/public/../orders/1", None).await;
    assert_eq!(
        r.status(),
        401,
        "normalized to /orders/1, which needs a token"
    );

    let r = get(&gw, "/nowhere", None).await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert_eq!(get(&gw, "/ordersX", None).await.status(), 404);
    assert_eq!(get(&gw, "/auth/unknown", None).await.status(), 404);
}

#[tokio::test]
async fn token_endpoint_errors_follow_rfc6749() {
    let (_up, gw, _key) = start().await;
    let client = reqwest::Client::new();
    let url = gw.url("/credential/jwt");

    let check = |r: reqwest::Response, status: u16, error: &'static str| async move {
        assert_eq!(r.status().as_u16(), status, "{error}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{error}");
        let headers = r.headers().clone();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], error);
        assert!(body["error_description"].is_string());
        headers
    };

    // Wrong secret with Basic: 401 and a Basic challenge.
    let h = check(
        get_token(&gw, "/credential/jwt", "reader", "wrong", None).await,
        401,
        "invalid_client",
    )
    .await;
    assert_eq!(h["www-authenticate"], "Basic realm=\"tollgate\"");
    // Unknown client, client_secret_post.
    let r = client
        .post(&url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "ghost"),
            ("client_secret", "x"),
        ])
        .send()
        .await
        .unwrap();
    check(r, 401, "invalid_client").await;
    // client_secret_post works.
    let r = client
        .post(&url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "reader"),
            ("client_secret", "reader-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Both methods at once.
    let r = client
        .post(&url)
        .basic_auth("reader", Some("reader-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_secret", "reader-secret"),
        ])
        .send()
        .await
        .unwrap();
    check(r, 400, "invalid_request").await;
    // No grant_type; an unsupported one.
    let r = client
        .post(&url)
        .basic_auth("reader", Some("reader-secret"))
        .form(&[("scope", "x")])
        .send()
        .await
        .unwrap();
    check(r, 400, "invalid_request").await;
    let r = client
        .post(&url)
        .basic_auth("reader", Some("reader-secret"))
        .form(&[("grant_type", "urn:example:magic")])
        .send()
        .await
        .unwrap();
    check(r, 400, "unsupported_grant_type").await;
    // A scope nobody granted.
    check(
        get_token(
            &gw,
            "/credential/jwt",
            "reader",
            "reader-secret",
            Some("admin"),
        )
        .await,
        400,
        "invalid_scope",
    )
    .await;
    // Requested ∩ granted.
    let r = get_token(
        &gw,
        "/credential/jwt",
        "reader",
        "reader-secret",
        Some("admin orders:write"),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["scope"], "orders:write");
    // Repeated parameter, wrong content type, GET.
    let r = client
        .post(&url)
        .basic_auth("reader", Some("reader-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    check(r, 400, "invalid_request").await;
    let r = client
        .post(&url)
        .basic_auth("reader", Some("reader-secret"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    check(r, 400, "invalid_request").await;
    let r = client.get(&url).send().await.unwrap();
    let h = check(r, 405, "invalid_request").await;
    assert_eq!(h["allow"], "POST");

    let issued = gw.metric("tollgate_tokens_issued_total{endpoint=\"/credential/jwt\",grant=\"client_credentials\"}").await;
    assert!(issued >= 2.0, "{issued}");
    let errors = gw
        .metric("tollgate_token_endpoint_errors_total{endpoint=\"/credential/jwt\",error=\"invalid_client\"}")
        .await;
    assert!(errors >= 2.0, "{errors}");
}

#[tokio::test]
async fn metrics_listener_serves_prometheus_text() {
    let (_up, gw, _key) = start().await;
    assert_eq!(get(&gw, "/public/x", None).await.status(), 200);
    assert_eq!(get(&gw, "/orders/x", None).await.status(), 401);
    // A request is counted as its handling ends, a moment after the client has the answer.
    let mut text = gw.metrics().await;
    for _ in 0..100 {
        if text.contains("tollgate_requests_total{api=\"orders\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        text = gw.metrics().await;
    }
    for name in [
        "tollgate_requests_total{api=\"public\",method=\"GET\",status=\"2xx\"}",
        "tollgate_requests_total{api=\"orders\",method=\"GET\",status=\"4xx\"}",
        "tollgate_request_duration_seconds_bucket{api=\"public\"",
        "tollgate_upstream_duration_seconds_bucket{api=\"public\"",
        "tollgate_token_validations_total{outcome=\"missing\"}",
        "tollgate_validation_cache_misses_total",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let other = reqwest::get(format!("http://127.0.0.1:{}/other", gw.metrics_port))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}
