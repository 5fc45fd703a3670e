//! Standard clients against the running gateway: openid-client (Node.js) discovers the
//! gateway from its issuer URL alone (RFC 8414) and runs client_credentials.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

#[tokio::test]
async fn openid_client_discovers_and_runs_client_credentials() {
    let up = start_upstream().await;
    let spec = GatewaySpec::new(format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{}"] }}
    auth: jwt
    rules: [{{ methods: [GET], path: "/orders/**", all_of: [orders:read] }}]
credentials:
  - client_id: reader
    client_secret_hash: "{}"
    acl: [orders]
    roles: [orders:read, orders:write]
"#,
        up.addr,
        cheap_hash("reader-secret")
    ));
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    assert!(
        dir.join("node_modules/openid-client").exists(),
        "run `npm ci --prefix tests/interop` (scripts/test.sh does)"
    );
    let base = gw.base.clone();
    let api = gw.url("/orders/1");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(&dir)
            .args([
                "client_credentials.mjs",
                &base,
                "reader",
                "reader-secret",
                "orders:read",
                &api,
            ])
            .output()
    })
    .await
    .unwrap()
    .expect("node is installed (scripts/install-deps.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["token_endpoint"], gw.url("/credential/jwt"));
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["scope"], "orders:read");
    assert_eq!(v["expires_in"], 900);
    assert_eq!(v["api_status"], 200);
}
