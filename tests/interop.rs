//! A standard client against the running gateway: openid-client (Node.js) discovers the
//! gateway from its issuer URL alone (RFC 8414) and runs every flow.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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

#[tokio::test]
async fn openid_client_runs_the_authorization_code_flow_from_discovery() {
    let up = start_upstream().await;
    let mut spec = GatewaySpec::new(format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{}"] }}
    auth: jwt
    rules: [{{ methods: [GET], path: "/orders/**", all_of: [orders:read] }}]
user_pools:
  - name: staff
    users:
      - username: alice
        password_hash: "{}"
        roles: [orders:read]
        email: alice@example.test
        name: Alice Example
credentials:
  - client_id: spa
    token_endpoint_auth_method: none
    grant_types: [authorization_code, refresh_token]
    redirect_uris: [http://127.0.0.1/callback]
    acl: [orders]
    roles: [orders:read]
    user_pool: staff
    consent: ask
    token: {{ refresh: true }}
"#,
        up.addr,
        cheap_hash("alice-pw"),
    ));
    // openid-client insists on HTTPS endpoints: the issuer is https://localhost:<port>.
    spec.https_issuer = true;
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    assert!(
        dir.join("node_modules/openid-client").exists(),
        "run `npm ci --prefix tests/interop` (scripts/test.sh does)"
    );
    let ca = gw.dir.path().join("tls-cert.pem");
    let args = [
        "--dns-result-order=ipv4first".to_string(),
        "codeflow.mjs".into(),
        gw.base.clone(),
        "spa".into(),
        "alice".into(),
        "alice-pw".into(),
        format!("{}/orders/1", gw.base),
        free_port().to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(&dir)
            .env("NODE_EXTRA_CA_CERTS", ca)
            .args(&args)
            .output()
    })
    .await
    .unwrap()
    .expect("node is installed (scripts/install-deps.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    println!("{v:#}");

    // Discovery alone gave openid-client the endpoints of a public PKCE client.
    let meta = &v["metadata"];
    assert_eq!(meta["issuer"], gw.base);
    assert_eq!(
        meta["authorization_endpoint"],
        format!("{}/oauth2/v2/authorize", gw.base)
    );
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    assert!(
        meta["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&"none".into()),
        "{meta}"
    );
    assert!(
        v["authorization_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/oauth2/v2/authorize?", gw.base))
    );

    // The browser's part: __Host- cookies over TLS, and back with code, state and iss.
    let cookies = v["cookies"].as_array().unwrap();
    for name in ["__Host-tollgate-flow", "__Host-tollgate-session"] {
        assert!(cookies.contains(&name.into()), "{cookies:?}");
    }
    let redirect_uri = v["redirect_uri"].as_str().unwrap();
    assert_eq!(
        format!(
            "{}{}",
            v["callback"]["origin"].as_str().unwrap(),
            v["callback"]["pathname"].as_str().unwrap()
        ),
        redirect_uri
    );
    assert_eq!(v["callback"]["has_code"], true);
    assert_eq!(v["callback"]["state_matches"], true);
    assert_eq!(v["callback"]["iss"], gw.base);

    // The tokens, and the ID token openid-client validated.
    assert_eq!(
        v["tokens"]["token_type"]
            .as_str()
            .map(str::to_ascii_lowercase),
        Some("bearer".into())
    );
    assert_eq!(v["tokens"]["has_refresh"], true);
    let scope: Vec<&str> = v["tokens"]["scope"].as_str().unwrap().split(' ').collect();
    for s in ["openid", "profile", "email", "orders:read"] {
        assert!(scope.contains(&s), "{scope:?}");
    }
    let claims = &v["id_token_claims"];
    assert_eq!(claims["iss"], gw.base);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "spa");
    assert_eq!(claims["nonce"], v["expected_nonce"]);
    assert!(claims["nonce"].is_string());
    assert!(claims["at_hash"].is_string());
    assert_eq!(claims["email"], "alice@example.test");
    assert_eq!(claims["name"], "Alice Example");

    // Userinfo, the API, a refresh.
    assert_eq!(v["userinfo"]["sub"], "alice");
    assert_eq!(v["userinfo"]["email"], "alice@example.test");
    assert_eq!(v["userinfo"]["name"], "Alice Example");
    assert_eq!(v["api"], 200);
    assert_eq!(v["refreshed"]["ok"], true);
    assert_eq!(v["refreshed"]["rotated"], true);
    assert_eq!(v["refreshed"]["api"], 200);

    // A forged iss is refused before the token endpoint; the code a second time gets
    // invalid_grant, and the grant's tokens are revoked.
    assert_eq!(v["replay"]["threw"], true, "{}", v["replay"]);
    assert_eq!(v["forged_iss"]["threw"], true, "{}", v["forged_iss"]);
    assert_eq!(v["replay"]["error"], "invalid_grant", "{}", v["replay"]);
    assert_eq!(v["replay"]["status"], 400, "{}", v["replay"]);
    assert_eq!(v["api_after_replay"], 401);
}
