//! Dynamic client registration (RFC 7591) with a standard client: openid-client (Node.js)
//! discovers the gateway from its issuer URL, registers a confidential client with an
//! initial access token the admin API issued, gets a client_credentials token with the
//! secret the gateway returned, and calls the protected API through the proxy. The token
//! it printed then opens the API here too, and only that API.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::admin::{self, Admin};
use common::*;
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

fn catalog(up: &Upstream) -> String {
    format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{addr}"] }}
    auth: jwt
    rules: [{{ methods: [GET], path: "/orders/**", all_of: [orders:read] }}]
  - name: billing
    prefix: /billing
    upstream: {{ servers: ["{addr}"] }}
    auth: jwt
"#,
        addr = up.addr
    )
}

/// One line per traced request: `POST /credential/register Bearer -> 201`.
fn summary(trace: &Value) -> Vec<String> {
    let steps = trace
        .as_array()
        .unwrap_or_else(|| panic!("no trace: {trace}"));
    let line = |s: &Value| {
        let scheme = s["auth_scheme"].as_str().unwrap_or("-");
        let (method, path) = (s["method"].as_str().unwrap(), s["path"].as_str().unwrap());
        format!("{method} {path} {scheme} -> {}", s["status"])
    };
    steps.iter().map(line).collect()
}

/// `GET path` through the proxy with a bearer token: the status.
async fn api(gw: &Gateway, path: &str, token: &str) -> u16 {
    let r = reqwest::Client::new().get(gw.url(path)).bearer_auth(token);
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn openid_client_registers_dynamically_and_its_client_calls_the_api() {
    let up = start_upstream().await;
    let admin_port = free_port();
    let mut spec = GatewaySpec::new(catalog(&up));
    spec.extra = format!(
        "{}registration:\n  enabled: true\n",
        admin::section(admin_port)
    );
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    let admin = Admin::new(admin_port);
    // The admin listener may answer a moment after the public one.
    let deadline = Instant::now() + Duration::from_secs(10);
    let url = format!("{}/v1/catalog", admin.base);
    while reqwest::get(&url).await.is_err() {
        assert!(Instant::now() < deadline, "admin API not up:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grant = json!({"acl": ["orders"], "roles": ["orders:read"]});
    let issued = admin.post("/v1/initial-access-tokens", grant).await;
    assert_eq!(issued.status, 201, "{:?}", issued.body);
    let iat = issued.body["initial_access_token"]
        .as_str()
        .unwrap()
        .to_string();

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    assert!(
        dir.join("node_modules/openid-client").exists(),
        "run `npm ci --prefix tests/interop` (scripts/test.sh does)"
    );
    let args = [
        "register.mjs".to_string(),
        gw.base.clone(),
        iat,
        gw.url("/orders/1"),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node").current_dir(&dir).args(&args).output()
    })
    .await
    .unwrap()
    .expect("node is installed (scripts/install-deps.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}\n{}", gw.log());
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    println!("{v:#}");

    // What the library sent and got: discovery, registration with the initial access
    // token, the token request with the issued secret, the API; then the second
    // registration refused, and the RFC 7592 read with the registration access token.
    let discovery = "GET /.well-known/openid-configuration - -> 200";
    let register = "POST /credential/register Bearer";
    let read = format!(
        "GET /credential/register/{} Bearer -> 200",
        v["client_id"].as_str().unwrap()
    );
    assert_eq!(
        summary(&v["trace"]),
        [
            discovery.to_string(),
            format!("{register} -> 201"),
            "POST /credential/jwt Basic -> 200".into(),
            "GET /orders/1 Bearer -> 200".into(),
            discovery.into(),
            format!("{register} -> 401"),
            read,
        ]
    );
    assert_eq!(v["trace"][1]["content_type"], "application/json");
    assert_eq!(v["issuer"], gw.base);
    assert_eq!(v["registration_endpoint"], gw.url("/credential/register"));

    // The registration as the library holds it.
    let id = v["client_id"].as_str().unwrap();
    let reg = &v["registered"];
    assert!(id.starts_with("tgc_"), "{v}");
    assert_eq!(reg["client_id"], id);
    assert_eq!(reg["has_secret"], true, "{reg}");
    assert_eq!(reg["client_secret_expires_at"], 0, "{reg}");
    assert_eq!(reg["client_name"], "openid-client interop", "{reg}");
    assert_eq!(reg["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(reg["scope"], "orders:read", "{reg}");
    let uri = reg["registration_client_uri"].as_str().unwrap();
    assert_eq!(uri, gw.url(&format!("/credential/register/{id}")));

    // The token it got, and the API through the gateway.
    let token = &v["token"];
    assert_eq!(token["token_type"], "bearer", "{token}");
    assert_eq!(token["scope"], "orders:read", "{token}");
    assert_eq!(v["api"]["status"], 200);
    assert_eq!(v["api"]["body"]["path"], "/orders/1");
    let access = token["access_token"].as_str().unwrap();
    assert_eq!(api(&gw, "/orders/2", access).await, 200);
    assert_eq!(api(&gw, "/billing/1", access).await, 401);

    // The single-use token again: the library surfaces the gateway's Bearer challenge.
    let again = &v["again"];
    assert_eq!(again["name"], "WWWAuthenticateChallengeError", "{again}");
    assert_eq!(again["status"], 401, "{again}");
    let challenge = json!([{"scheme": "bearer", "error": "invalid_token"}]);
    assert_eq!(again["challenges"], challenge, "{again}");

    // RFC 7592 read through the library: it answers with a new registration access
    // token, which works here, while the one the read replaced does not.
    assert_eq!(v["read"]["body"]["client_id"], id, "{}", v["read"]);
    assert!(v["read"]["body"].get("client_secret").is_none());
    let first = reg["registration_access_token"].as_str().unwrap();
    let newest = v["read"]["body"]["registration_access_token"]
        .as_str()
        .unwrap();
    assert_ne!(first, newest);
    let read = |token: &str| reqwest::Client::new().get(uri).bearer_auth(token).send();
    assert_eq!(read(first).await.unwrap().status(), 401);
    let r = read(newest).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["client_name"], "openid-client interop", "{body}");
}
