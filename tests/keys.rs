//! Signing keys: the generated key survives a restart, RS256 and EdDSA work end to end,
//! and a rotated-out key keeps its tokens valid while it is listed for verification.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::Value;

fn catalog(up: &Upstream) -> String {
    format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{}"] }}
    auth: jwt
credentials:
  - client_id: app
    client_secret_hash: "{}"
    acl: [orders]
    roles: [orders:read]
"#,
        up.addr,
        cheap_hash("app-secret")
    )
}

async fn call(gw: &Gateway, token: &str) -> u16 {
    reqwest::Client::new()
        .get(gw.url("/orders/1"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn jwks(gw: &Gateway) -> jsonwebtoken::jwk::JwkSet {
    reqwest::get(gw.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Verify `token` with jsonwebtoken against the gateway's published keys.
async fn verify_with_jwks(gw: &Gateway, token: &str, alg: jsonwebtoken::Algorithm) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, alg);
    let set = jwks(gw).await;
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(alg);
    v.set_audience(&["orders"]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .unwrap()
    .claims
}

#[tokio::test]
async fn generated_key_survives_kill_and_restart() {
    let up = start_upstream().await;
    let mut spec = GatewaySpec::new(catalog(&up));
    spec.tokens = Some("tokens:\n  signing_key: { algorithm: ES256 }\n".into());
    let mut gw = Gateway::start(spec, &TestKey::generate()).await;
    assert!(
        gw.state_dir().join("tollgate.db").exists(),
        "the key is kept in the store"
    );
    let token = access_token(&gw, "/credential/jwt", "app", "app-secret").await;
    assert_eq!(call(&gw, &token).await, 200);
    let kid_before = jwks(&gw).await.keys[0].common.key_id.clone();

    gw.kill();
    gw.spawn().await;
    assert_eq!(
        call(&gw, &token).await,
        200,
        "a token issued before the restart still works"
    );
    assert_eq!(jwks(&gw).await.keys[0].common.key_id, kid_before);
}

#[tokio::test]
async fn rs256_and_eddsa_keys_issue_and_validate() {
    for (name, alg) in [
        ("RS256", jsonwebtoken::Algorithm::RS256),
        ("EdDSA", jsonwebtoken::Algorithm::EdDSA),
    ] {
        let up = start_upstream().await;
        let mut spec = GatewaySpec::new(catalog(&up));
        spec.tokens = Some(format!("tokens:\n  signing_key: {{ algorithm: {name} }}\n"));
        let gw = Gateway::start(spec, &TestKey::generate()).await;
        let token = access_token(&gw, "/credential/jwt", "app", "app-secret").await;
        let claims = verify_with_jwks(&gw, &token, alg).await;
        assert_eq!(claims["client_id"], "app", "{name}");
        assert_eq!(call(&gw, &token).await, 200, "{name}");
    }
}

#[tokio::test]
async fn a_rotated_out_key_still_verifies_its_tokens() {
    let up = start_upstream().await;
    let old = TestKey::generate();
    let mut gw = Gateway::start(GatewaySpec::new(catalog(&up)), &old).await;
    let old_token = access_token(&gw, "/credential/jwt", "app", "app-secret").await;
    assert_eq!(call(&gw, &old_token).await, 200);

    // Rotate: a new signing key; the old one is kept for verification only.
    gw.kill();
    let new = TestKey::generate();
    write_file(gw.dir.path(), "new.pem", &new.pem);
    let conf = std::fs::read_to_string(&gw.config_path)
        .unwrap()
        .replace(
            "signing_key: { algorithm: ES256, file: signing.pem, kid: test-key }",
            "signing_key: { algorithm: ES256, file: new.pem, kid: key-2 }\n  verification_keys:\n    - { file: signing.pem, algorithm: ES256, kid: test-key }",
        );
    std::fs::write(&gw.config_path, conf).unwrap();
    gw.spawn().await;

    let kids: Vec<_> = jwks(&gw)
        .await
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect();
    assert_eq!(kids, ["key-2", "test-key"]);
    assert_eq!(call(&gw, &old_token).await, 200);
    let new_token = access_token(&gw, "/credential/jwt", "app", "app-secret").await;
    assert_eq!(
        jsonwebtoken::decode_header(&new_token)
            .unwrap()
            .kid
            .as_deref(),
        Some("key-2")
    );
    assert_eq!(call(&gw, &new_token).await, 200);

    // Dropping the old key from the set ends its tokens.
    gw.kill();
    let conf = std::fs::read_to_string(&gw.config_path).unwrap();
    let conf = conf.replace(
        "  verification_keys:\n    - { file: signing.pem, algorithm: ES256, kid: test-key }",
        "",
    );
    std::fs::write(&gw.config_path, conf).unwrap();
    gw.spawn().await;
    assert_eq!(call(&gw, &old_token).await, 401);
    assert_eq!(call(&gw, &new_token).await, 200);
}

#[tokio::test]
async fn generated_keys_rotate_on_the_embedded_store() {
    let up = start_upstream().await;
    let mut spec = GatewaySpec::new(catalog(&up));
    spec.tokens = Some(
        "tokens:\n  signing_key: { algorithm: ES256 }\n  jwks_max_age: 1s\n  leeway: 0s\n  rotation: { publish_ahead: 2s }\n"
            .into(),
    );
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    let before = access_token(&gw, "/credential/jwt", "app", "app-secret").await;
    let old = jsonwebtoken::decode_header(&before).unwrap().kid.unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(binary())
            .args(args)
            .arg("-c")
            .arg(&gw.config_path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let said = run(&["keys", "rotate"]);
    let new = said.split('`').nth(1).unwrap().to_string();
    assert_ne!(new, old);
    // Asked again while the new key waits: nothing to do.
    assert!(run(&["keys", "rotate"]).contains("nothing to do"));
    let listed = run(&["keys", "list"]);
    assert!(
        listed.contains(&format!("{old}  ES256  signing")),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("{new}  ES256  published, not signing yet")),
        "{listed}"
    );
    // The running gateway publishes it, then signs with it; the earlier token stays valid.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let t = access_token(&gw, "/credential/jwt", "app", "app-secret").await;
        if jsonwebtoken::decode_header(&t).unwrap().kid.as_deref() == Some(new.as_str()) {
            assert_eq!(call(&gw, &t).await, 200);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never signed with the new key"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let kids: Vec<_> = jwks(&gw)
        .await
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect();
    assert!(kids.contains(&old) && kids.contains(&new), "{kids:?}");
    assert_eq!(call(&gw, &before).await, 200);
}
