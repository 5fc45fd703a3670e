//! DPoP (RFC 9449) end to end with a standard client: openid-client (Node.js) discovers the
//! gateway, gets DPoP-bound tokens (client_credentials, and the authorization code flow of
//! a public client with its key-bound refresh token), answers the gateway's nonce
//! challenges at the token endpoint and at the protected route itself, and calls the route
//! through the proxy with `Authorization: DPoP` and a proof carrying `ath`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};
use std::process::Command;

const DPOP_SETTINGS: &str = "dpop:
  algorithms: [ES256, EdDSA]
  proof_max_age: 60s
  replay: per_node
  nonce: { token_endpoints: true, resources: true }
";

/// One line per traced request: `POST /credential/jwt nonce=false -> 400 use_dpop_nonce`.
/// The error is the body's `error`, else the `error` of the `WWW-Authenticate` challenge.
fn summary(steps: &Value) -> Vec<String> {
    let Some(steps) = steps.as_array() else {
        return vec![format!("no requests: {steps}")];
    };
    steps
        .iter()
        .map(|s| {
            let challenge = s["www_authenticate"].as_str().and_then(|w| {
                let rest = &w[w.find("error=\"")? + 7..];
                Some(rest[..rest.find('"')?].to_string())
            });
            let error = s["error"].as_str().map(str::to_string).or(challenge);
            format!(
                "{} {} nonce={} -> {}{}",
                s["method"].as_str().unwrap_or("?"),
                s["path"].as_str().unwrap_or("?"),
                s["proof"]["has_nonce"],
                s["status"],
                error.map(|e| format!(" {e}")).unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn openid_client_binds_tokens_with_dpop_and_answers_nonce_challenges() {
    let up = start_upstream().await;
    let mut spec = GatewaySpec::new(format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{}"] }}
    auth: jwt
    dpop: required
    rules: [{{ methods: [GET], path: "/orders/**", all_of: [orders:read] }}]
user_pools:
  - name: staff
    users: [{{ username: alice, password_hash: "{}", roles: [orders:read] }}]
credentials:
  - client_id: service
    client_secret_hash: "{}"
    grant_types: [client_credentials]
    acl: [orders]
    roles: [orders:read]
    dpop_bound_access_tokens: true
  - client_id: plain
    client_secret_hash: "{}"
    grant_types: [client_credentials]
    acl: [orders]
    roles: [orders:read]
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
        cheap_hash("service-secret"),
        cheap_hash("plain-secret"),
    ));
    // openid-client insists on HTTPS endpoints: the issuer is https://localhost:<port>.
    spec.https_issuer = true;
    spec.extra = DPOP_SETTINGS.into();
    let gw = Gateway::start(spec, &TestKey::generate()).await;

    // A client with dpop_bound_access_tokens and no proof: refused (RFC 9449 §5.2).
    let r = get_token(&gw, "/credential/jwt", "service", "service-secret", None).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
    // A bearer token of another client on the DPoP-only route: refused with a DPoP challenge.
    let plain = access_token(&gw, "/credential/jwt", "plain", "plain-secret").await;
    let r = reqwest::Client::new()
        .get(gw.url("/orders/1"))
        .bearer_auth(&plain)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|h| h.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(challenge.starts_with("DPoP"), "{challenge}");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    assert!(
        dir.join("node_modules/openid-client").exists(),
        "run `npm ci --prefix tests/interop` (scripts/test.sh does)"
    );
    let ca = gw.dir.path().join("tls-cert.pem");
    let args = [
        "--dns-result-order=ipv4first".to_string(),
        "dpop.mjs".into(),
        gw.base.clone(),
        "service".into(),
        "service-secret".into(),
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
    let trace = &v["trace"];

    // Discovery advertises the proof algorithms.
    assert_eq!(v["metadata"]["issuer"], gw.base);
    assert_eq!(
        v["metadata"]["token_endpoint"],
        format!("{}/credential/jwt", gw.base)
    );
    assert_eq!(
        v["metadata"]["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"])
    );

    // client_credentials: a nonce challenge, the library's retry, a DPoP token bound to
    // the key (cnf.jkt is the RFC 7638 thumbprint the script computed itself).
    let nonce_then_token = [
        "POST /credential/jwt nonce=false -> 400 use_dpop_nonce",
        "POST /credential/jwt nonce=true -> 200",
    ];
    assert_eq!(summary(&trace["client_credentials"]), nonce_then_token);
    assert_eq!(trace["client_credentials"][0]["dpop_nonce_header"], true);
    assert_eq!(trace["client_credentials"][1]["token_type"], "DPoP");
    assert_eq!(v["client_credentials"]["token_type"], "dpop");
    assert_eq!(v["client_credentials"]["jkt_matches"], true);
    assert_eq!(v["client_credentials"]["library_thumbprint_agrees"], true);

    // The protected route: a nonce challenge there too, then the upstream's answer.
    assert_eq!(
        summary(&trace["resource"]),
        [
            "GET /orders/1 nonce=false -> 401 use_dpop_nonce",
            "GET /orders/1 nonce=true -> 200",
        ]
    );
    for step in trace["resource"].as_array().unwrap() {
        assert_eq!(step["auth_scheme"], "DPoP", "{step}");
        assert_eq!(step["proof"]["typ"], "dpop+jwt", "{step}");
        assert_eq!(step["proof"]["alg"], "ES256", "{step}");
        assert_eq!(step["proof"]["htm"], "GET", "{step}");
        assert_eq!(step["proof"]["has_ath"], true, "{step}");
    }
    let challenge = trace["resource"][0]["www_authenticate"].as_str().unwrap();
    assert!(challenge.starts_with("DPoP"), "{challenge}");
    assert!(
        challenge.contains(r#"error="use_dpop_nonce""#),
        "{challenge}"
    );
    assert_eq!(trace["resource"][0]["dpop_nonce_header"], true);
    assert_eq!(v["resource"]["status"], 200);
    assert_eq!(v["resource"]["body"]["method"], "GET");
    assert_eq!(v["resource"]["body"]["path"], "/orders/1");
    assert_eq!(v["resource_again"], 200);

    // The DPoP-bound token as a bearer token: refused.
    assert_eq!(v["bearer"]["status"], 401);
    let challenge = v["bearer"]["www_authenticate"].as_str().unwrap_or("");
    assert!(challenge.starts_with("DPoP"), "{challenge}");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );

    // The public client: the code exchanged with a proof (after the nonce challenge), the
    // API, a refresh with the same handle, and the refresh token useless with another key.
    assert_eq!(summary(&trace["code"]), nonce_then_token);
    assert_eq!(trace["code"][1]["token_type"], "DPoP");
    assert_eq!(v["code"]["token_type"], "dpop");
    assert_eq!(v["code"]["jkt_matches"], true);
    assert_eq!(v["code"]["has_refresh"], true);
    assert_eq!(v["code"]["api"], 200);
    let refresh = trace["refresh"].as_array().unwrap();
    assert_eq!(refresh.last().unwrap()["token_type"], "DPoP", "{refresh:?}");
    assert_eq!(v["refresh"]["token_type"], "dpop");
    assert_eq!(v["refresh"]["jkt_matches"], true);
    assert_eq!(v["refresh"]["rotated"], true);
    assert_eq!(v["refresh"]["api"], 200);
    let other = &v["refresh_other_key"];
    assert_eq!(other["threw"], true, "{other}");
    assert_eq!(other["status"], 400, "{other}");
    assert_eq!(other["error"], "invalid_dpop_proof", "{other}");
}
