//! gRPC end to end: a real gRPC server (Node's @grpc/grpc-js, h2c) behind a protected API
//! with `protocol: h2c`, called through tollgate's plain listener (`h2c: true`) by a real
//! gRPC client. Unary and server-streaming calls, trailers, deadlines, the token from the
//! `authorization` metadata, and tollgate's refusals as gRPC statuses.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::node::NodeServer;
use common::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;

fn scripts() -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    assert!(
        dir.join("node_modules/@grpc/grpc-js").exists(),
        "run `npm ci --prefix tests/interop` (scripts/test.sh does)"
    );
    dir.join("grpc")
}

/// One call through `target` by the Node client; its JSON outcome.
fn call(target: &str, method: &str, token: Option<&str>, args: &[&str]) -> Value {
    let out = Command::new("node")
        .arg(scripts().join("client.mjs"))
        .args([target, method, token.unwrap_or("-")])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|_| {
        panic!(
            "client said {text:?}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn catalog(upstream_port: u16, extra: &str) -> String {
    format!(
        r#"
apis:
  - name: echo
    prefix: /echo.Echo
    upstream: {{ servers: ["127.0.0.1:{upstream_port}"], protocol: h2c, read_timeout: 5s }}
    auth: jwt
    identity:
      claims: {{ x-user: sub }}
    rules:
      - {{ methods: [POST], path: /echo.Echo/Say, all_of: ["echo:say"] }}
      - {{ methods: [POST], path: /echo.Echo/Count, all_of: ["echo:count"] }}
credentials:
  - {{ client_id: reader, client_secret_hash: "{hash}", acl: [echo] }}
{extra}"#,
        hash = cheap_hash("reader-secret")
    )
}

async fn gateway(upstream_port: u16, key: &TestKey) -> Gateway {
    let mut spec = GatewaySpec::new(catalog(upstream_port, ""));
    spec.h2c = true;
    Gateway::start(spec, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_calls_pass_a_protected_api_and_refusals_are_grpc_statuses() {
    let echo = NodeServer::start("grpc/server.mjs", &[] as &[&str]);
    let key = TestKey::generate();
    let gw = gateway(echo.port, &key).await;
    let target = format!("127.0.0.1:{}", gw.port);
    let token = |scope: &str| {
        key.token(
            &gw.base,
            json!({"aud": "echo", "scope": scope, "sub": "alice"}),
        )
    };
    let both = token("echo:say echo:count");

    // Direct, for comparison: the server works.
    let direct = call(&format!("127.0.0.1:{}", echo.port), "Say", None, &["hi"]);
    assert_eq!(direct["code"], 0, "{direct}");

    // Unary, allowed: the answer, the server's trailer, the identity the gateway vouches for.
    let r = call(&target, "Say", Some(&both), &["hi"]);
    assert_eq!(r["code"], 0, "{r}\n{}", gw.log());
    assert_eq!(r["replies"][0]["text"], "hello hi");
    assert_eq!(r["trailers"]["x-served-by"], "echo", "{r}");
    let seen: Value = serde_json::from_str(r["replies"][0]["seen"].as_str().unwrap()).unwrap();
    assert_eq!(seen["x-user"], "alice", "{seen}");
    assert!(
        seen["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer ")
    );

    // Server streaming: every message, in order, then the trailers.
    let r = call(&target, "Count", Some(&both), &["tick", "5", "20"]);
    assert_eq!(r["code"], 0, "{r}");
    let counted: Vec<i64> = r["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["i"].as_i64().unwrap())
        .collect();
    assert_eq!(counted, [1, 2, 3, 4, 5]);
    assert_eq!(r["trailers"]["x-served-by"], "echo", "{r}");

    // No token: UNAUTHENTICATED, with the RFC 6750 challenge alongside.
    let r = call(&target, "Say", None, &["hi"]);
    assert_eq!(r["code"], 16, "{r}");
    assert!(
        r["trailers"]["www-authenticate"]
            .as_str()
            .unwrap()
            .starts_with("Bearer"),
        "{r}"
    );
    // The access log says which gRPC status the HTTP 200 carried.
    assert!(
        gw.wait_for_log("\"POST /echo.Echo/Say\" 200").await && gw.log().contains(" grpc=16"),
        "{}",
        gw.log()
    );
    // A bad token: UNAUTHENTICATED with the reason.
    let r = call(&target, "Say", Some("not-a-token"), &["hi"]);
    assert_eq!(r["code"], 16, "{r}");
    assert!(!r["details"].as_str().unwrap().is_empty(), "{r}");
    // A scope missing for this method: PERMISSION_DENIED; the other method still passes.
    let say_only = token("echo:say");
    let r = call(&target, "Count", Some(&say_only), &["tick", "2", "0"]);
    assert_eq!(r["code"], 7, "{r}");
    assert_eq!(call(&target, "Say", Some(&say_only), &["hi"])["code"], 0);

    // A deadline shorter than the server takes: DEADLINE_EXCEEDED, the gateway unharmed.
    let r = call(&target, "Say", Some(&both), &["slow", "0", "3000", "500"]);
    assert_eq!(r["code"], 4, "{r}");
    assert_eq!(call(&target, "Say", Some(&both), &["again"])["code"], 0);

    // The upstream gone: UNAVAILABLE.
    drop(echo);
    let r = call(&target, "Say", Some(&both), &["hi"]);
    assert_eq!(r["code"], 14, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rate_limited_grpc_call_is_resource_exhausted() {
    let echo = NodeServer::start("grpc/server.mjs", &[] as &[&str]);
    let key = TestKey::generate();
    let mut spec = GatewaySpec::new(catalog(echo.port, "").replace(
        "    auth: jwt\n",
        "    auth: jwt\n    rate_limit: { requests: 1, per: 1m }\n",
    ));
    spec.h2c = true;
    let gw = Gateway::start(spec, &key).await;
    let target = format!("127.0.0.1:{}", gw.port);
    let t = key.token(&gw.base, json!({"aud": "echo", "scope": "echo:say"}));
    assert_eq!(call(&target, "Say", Some(&t), &["one"])["code"], 0);
    let r = call(&target, "Say", Some(&t), &["two"]);
    assert_eq!(r["code"], 8, "{r}");
    assert!(r["trailers"]["retry-after"].is_string(), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http1_client_reaches_an_h2c_only_server_and_health_checks_speak_h2c() {
    let h2 = NodeServer::start("grpc/h2only.mjs", &[] as &[&str]);
    let dead = free_port();
    // Two servers: one that speaks only HTTP/2, and a port nobody listens on. The HTTP
    // check takes the dead one out; had it spoken HTTP/1.1 it would take both out, and
    // every request would be refused.
    let text = format!(
        r#"
apis:
  - name: rest
    prefix: /rest
    upstream:
      servers: ["127.0.0.1:{}", "127.0.0.1:{dead}"]
      protocol: h2c
      health_check: {{ kind: http, path: /healthz, interval: 100ms, timeout: 500ms, unhealthy_after: 1, healthy_after: 1 }}
    auth: none
"#,
        h2.port
    );
    let gw = Gateway::start(GatewaySpec::new(text), &TestKey::generate()).await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    for i in 0..6 {
        let r = reqwest::get(gw.url(&format!("/rest/item/{i}")))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i}\n{}", gw.log());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["version"], "2.0", "{body}");
        assert_eq!(body["path"], format!("/rest/item/{i}"));
    }
    assert!(
        gw.log().contains(&format!("127.0.0.1:{dead}")),
        "{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn h2_over_tls_is_agreed_by_alpn_and_the_certificate_verified() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = write_file(dir.path(), "cert.pem", &ck.cert.pem());
    let key_file = write_file(dir.path(), "key.pem", &ck.key_pair.serialize_pem());
    let h2 = NodeServer::start(
        "grpc/h2only.mjs",
        &[std::path::Path::new("--tls"), &cert, &key_file],
    );
    let text = format!(
        r#"
apis:
  - name: rest
    prefix: /rest
    upstream: {{ servers: ["127.0.0.1:{port}"], protocol: h2, tls: {{ sni: localhost, ca_file: upstream-ca.pem }} }}
    auth: none
  - name: wrong-name
    prefix: /wrong-name
    upstream: {{ servers: ["127.0.0.1:{port}"], protocol: h2, tls: {{ sni: other.example, ca_file: upstream-ca.pem }} }}
    auth: none
"#,
        port = h2.port
    );
    let mut spec = GatewaySpec::new(text);
    spec.files = vec![("upstream-ca.pem".into(), ck.cert.pem())];
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    let r = reqwest::get(gw.url("/rest/a")).await.unwrap();
    assert_eq!(r.status(), 200, "{}", gw.log());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["version"], "2.0", "{body}");
    assert_eq!(body["path"], "/rest/a");
    // A certificate for another name: refused, not spoken to.
    let r = reqwest::get(gw.url("/wrong-name/a")).await.unwrap();
    assert_eq!(r.status(), 502);
}

#[test]
fn the_check_names_a_protocol_that_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let conf = write_file(
        dir.path(),
        "tollgate.yaml",
        "listen: [{ addr: 127.0.0.1:0, tls: { cert: c.pem, key: k.pem }, h2c: true }]\nstate_dir: state\nupstreams_file: upstreams.yaml\n",
    );
    write_file(
        dir.path(),
        "upstreams.yaml",
        r#"
apis:
  - { name: a, prefix: /a, upstream: { servers: ["127.0.0.1:1"], protocol: h2 }, auth: none }
  - { name: b, prefix: /b, upstream: { servers: ["127.0.0.1:1"], protocol: h3 }, auth: none }
  - { name: c, prefix: /c, upstream: { servers: ["127.0.0.1:1"], protocol: h2c, tls: { verify: false } }, auth: none }
"#,
    );
    let out = Command::new(binary())
        .args(["-t", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    for (path, words) in [
        ("listen[0].h2c", "a TLS listener offers HTTP/2 by ALPN"),
        ("apis[0].upstream.protocol", "h2 is HTTP/2 over TLS"),
        ("apis[1].upstream.protocol", "unknown protocol `h3`"),
        ("apis[2].upstream.protocol", "h2c is HTTP/2 without TLS"),
    ] {
        assert!(
            said.lines()
                .any(|l| l.contains(&format!(": {path}: ")) && l.contains(words)),
            "no `{words}` at {path}:\n{said}"
        );
    }
}
