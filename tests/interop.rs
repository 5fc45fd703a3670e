//! A standard client against the running gateway: openid-client (Node.js) discovers the
//! gateway from its issuer URL alone (RFC 8414) and runs every flow.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

#[tokio::test]
async fn openid_client_runs_every_flow_from_discovery() {
    let up = start_upstream().await;
    let spec = GatewaySpec::new(format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{}"] }}
    auth: jwt
    rules: [{{ methods: [GET], path: "/orders/**", all_of: [orders:read] }}]
user_pools:
  - name: staff
    users: [{{ username: alice, password_hash: "{}", roles: [orders:read] }}]
credentials:
  - client_id: reader
    client_secret_hash: "{}"
    acl: [orders]
    roles: [orders:read, orders:write]
    grant_types: [client_credentials, password]
    user_pool: staff
    token: {{ refresh: true }}
"#,
        up.addr,
        cheap_hash("alice-pw"),
        cheap_hash("reader-secret")
    ));
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    assert!(
        dir.join("node_modules/openid-client").exists(),
        "run `npm ci --prefix tests/interop` (scripts/test.sh does)"
    );
    let args = [
        "flows.mjs".to_string(),
        gw.base.clone(),
        "reader".into(),
        "reader-secret".into(),
        "alice".into(),
        "alice-pw".into(),
        gw.url("/orders/1"),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node").current_dir(&dir).args(&args).output()
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
    assert_eq!(v["metadata"]["token_endpoint"], gw.url("/credential/jwt"));
    assert_eq!(
        v["metadata"]["introspection_endpoint"],
        gw.url("/credential/introspect")
    );
    assert_eq!(
        v["metadata"]["revocation_endpoint"],
        gw.url("/credential/revoke")
    );
    assert_eq!(
        v["metadata"]["grant_types_supported"],
        serde_json::json!(["client_credentials", "password", "refresh_token"])
    );
    assert_eq!(v["client_credentials"]["scope"], "orders:read");
    assert_eq!(v["client_credentials"]["expires_in"], 900);
    assert_eq!(v["client_credentials"]["api"], 200);
    assert_eq!(v["password"]["scope"], "orders:read");
    assert_eq!(v["password"]["has_refresh"], true);
    assert_eq!(v["refresh"]["rotated"], true);
    assert_eq!(v["introspection"]["active"], true);
    assert_eq!(v["introspection"]["username"], "alice");
    assert_eq!(v["introspection"]["client_id"], "reader");
    assert_eq!(v["api_before_revocation"], 200);
    assert_eq!(v["api_after_revocation"], 401);
    assert_eq!(v["introspection_after_revocation"], false);
}
