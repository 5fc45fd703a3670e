//! Token-endpoint abuse: malformed requests get RFC 6749 errors, and guessing client
//! secrets or user passwords is stopped by the brute-force limits.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;

fn catalog(up: &Upstream) -> String {
    format!(
        r#"
apis:
  - {{ name: orders, prefix: /orders, upstream: {{ servers: ["{}"] }}, auth: jwt }}
user_pools:
  - name: staff
    users: [{{ username: alice, password_hash: "{}", roles: [orders:read] }}]
credentials:
  - client_id: reader
    client_secret_hash: "{}"
    acl: [orders]
    roles: [orders:read]
    grant_types: [client_credentials, password]
    user_pool: staff
"#,
        up.addr,
        cheap_hash("alice-pw"),
        cheap_hash("reader-secret")
    )
}

async fn start() -> (Upstream, Gateway) {
    let up = start_upstream().await;
    let mut spec = GatewaySpec::new(catalog(&up));
    spec.extra =
        "limits: { failed_auth_window: 1m, failed_auth_per_account: 3, failed_auth_per_ip: 8 }\n"
            .into();
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    (up, gw)
}

async fn expect_error(
    r: reqwest::Response,
    status: u16,
    error: &str,
) -> reqwest::header::HeaderMap {
    assert_eq!(r.status().as_u16(), status, "{error}");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let headers = r.headers().clone();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], error, "{v}");
    headers
}

fn post(gw: &Gateway) -> reqwest::RequestBuilder {
    reqwest::Client::new().post(gw.url("/credential/jwt"))
}

#[tokio::test]
async fn a_wrong_content_type_is_invalid_request() {
    let (_up, gw) = start().await;
    for (ct, body) in [
        ("application/json", r#"{"grant_type":"client_credentials"}"#),
        ("text/plain", "grant_type=client_credentials"),
        ("multipart/form-data; boundary=x", "--x--"),
    ] {
        let r = post(&gw)
            .basic_auth("reader", Some("reader-secret"))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        expect_error(r, 400, "invalid_request").await;
    }
    let r = post(&gw)
        .basic_auth("reader", Some("reader-secret"))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_request").await;
}

#[tokio::test]
async fn duplicated_parameters_are_invalid_request() {
    let (_up, gw) = start().await;
    for body in [
        "grant_type=client_credentials&grant_type=password",
        "grant_type=client_credentials&scope=a&scope=b",
        "grant_type=client_credentials&client_id=reader&client_id=reader&client_secret=reader-secret",
    ] {
        let r = post(&gw)
            .header("content-type", "application/x-www-form-urlencoded")
            .basic_auth("reader", Some("reader-secret"))
            .body(body)
            .send()
            .await
            .unwrap();
        expect_error(r, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let (_up, gw) = start().await;
    let body = format!(
        "grant_type=client_credentials&scope={}",
        "a".repeat(64 * 1024)
    );
    let r = post(&gw)
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth("reader", Some("reader-secret"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
}

#[tokio::test]
async fn authenticating_by_header_and_body_is_invalid_request() {
    let (_up, gw) = start().await;
    let r = post(&gw)
        .basic_auth("reader", Some("reader-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "reader"),
            ("client_secret", "reader-secret"),
        ])
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_request").await;
}

#[tokio::test]
async fn an_unknown_client_is_invalid_client() {
    let (_up, gw) = start().await;
    let r = post(&gw)
        .basic_auth("nobody", Some("whatever"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let h = expect_error(r, 401, "invalid_client").await;
    assert_eq!(h["www-authenticate"], "Basic realm=\"tollgate\"");
}

#[tokio::test]
async fn guessing_a_client_secret_is_throttled() {
    let (_up, gw) = start().await;
    for _ in 0..3 {
        let r = post(&gw)
            .basic_auth("reader", Some("guess"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        expect_error(r, 401, "invalid_client").await;
    }
    // Past the limit even the right secret waits: the attempt is not even checked.
    let r = post(&gw)
        .basic_auth("reader", Some("reader-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let h = expect_error(r, 429, "temporarily_unavailable").await;
    assert_eq!(h["retry-after"], "60");
    assert_eq!(
        gw.metric("tollgate_auth_throttled_total{subject=\"client\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn guessing_a_password_is_throttled() {
    let (_up, gw) = start().await;
    let attempt = |password: &'static str| {
        post(&gw)
            .basic_auth("reader", Some("reader-secret"))
            .form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", password),
            ])
            .send()
    };
    for _ in 0..3 {
        expect_error(attempt("guess").await.unwrap(), 400, "invalid_grant").await;
    }
    let h = expect_error(
        attempt("alice-pw").await.unwrap(),
        429,
        "temporarily_unavailable",
    )
    .await;
    assert!(h.contains_key("retry-after"));
    assert_eq!(
        gw.metric("tollgate_auth_throttled_total{subject=\"user\"}")
            .await,
        1.0
    );
    // The client itself is not locked out for its user's failures.
    let r = post(&gw)
        .basic_auth("reader", Some("reader-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn one_address_guessing_across_accounts_is_throttled() {
    let (_up, gw) = start().await;
    for i in 0..8 {
        let r = post(&gw)
            .basic_auth(format!("client-{i}"), Some("guess"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        expect_error(r, 401, "invalid_client").await;
    }
    let r = post(&gw)
        .basic_auth("reader", Some("reader-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    expect_error(r, 429, "temporarily_unavailable").await;
    assert_eq!(
        gw.metric("tollgate_auth_throttled_total{subject=\"ip\"}")
            .await,
        1.0
    );
}
