//! No secret reaches a log: every flow runs at the most verbose level, then every line the
//! gateway wrote is searched for the secrets, passwords and tokens that went through it.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::oauth::*;
use common::*;
use oauth2::{ResourceOwnerPassword, ResourceOwnerUsername, StandardRevocableToken, TokenResponse};

#[tokio::test]
async fn no_secret_password_or_token_is_ever_logged() {
    every_flow_and_no_secret_in_the_log("text").await;
}

#[tokio::test]
async fn the_json_access_log_is_one_object_per_request_and_holds_no_secret() {
    let (_up, _gw, log) = every_flow_and_no_secret_in_the_log("json").await;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 8, "{log}");
    for l in &lines {
        for field in [
            "time",
            "request_id",
            "method",
            "path",
            "status",
            "duration_ms",
            "api",
        ] {
            assert!(l.get(field).is_some(), "no {field} in {l}");
        }
        assert!(!l["path"].as_str().unwrap().contains('?'), "{l}");
        assert_eq!(l["request_id"].as_str().unwrap().len(), 32, "{l}");
    }
    // The proxied call that passed names its caller and upstream, never the token.
    let passed = lines
        .iter()
        .find(|l| l["api"] == "orders" && l["status"] == 200 && l["sub"] == "alice")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(passed["via"], "jwt");
    assert_eq!(passed["client_id"], "reporting");
    assert!(
        passed["upstream"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(passed["bytes_out"].as_u64().unwrap() > 0);
    // Token-service answers are logged too, with their own label.
    assert!(lines.iter().any(|l| l["api"] == "(token_service)"));
}

/// Provisioning at run time: a credential with a generated secret, its rotation, an API
/// key, an initial access token, a registration and its management. Returns every secret,
/// key and token that went through.
async fn provisioning_flows(gw: &Gateway, admin_port: u16) -> Vec<String> {
    use serde_json::json;
    let admin = common::admin::Admin::new(admin_port);
    let mut out = vec![common::admin::KEY.to_string()];
    let (id, secret) = admin
        .create_credential(
            json!({ "client_id": "provisioned", "acl": ["orders"], "roles": ["orders:read"] }),
        )
        .await;
    let rotated = admin
        .post(
            &format!("/v1/credentials/{id}/secret"),
            json!({ "overlap": "1m" }),
        )
        .await;
    let new_secret = rotated.body["client_secret"].as_str().unwrap().to_string();
    let key = admin
        .post(
            &format!("/v1/credentials/{id}/api-keys"),
            json!({ "name": "k" }),
        )
        .await;
    let api_key = key.body["api_key"].as_str().unwrap().to_string();
    let http = gw.client();
    let token: serde_json::Value = http
        .post(gw.url("/credential/jwt"))
        .basic_auth(&id, Some(&new_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = token["access_token"].as_str().unwrap().to_string();
    assert_eq!(call(gw, "/orders/1", &access).await, 200);
    let _ = http
        .get(gw.url("/orders/1"))
        .header("x-api-key", &api_key)
        .send()
        .await;
    let iat = admin
        .post(
            "/v1/initial-access-tokens",
            json!({ "acl": ["orders"], "roles": ["orders:read"] }),
        )
        .await;
    let iat = iat.body["initial_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let reg: serde_json::Value = http
        .post(gw.url("/credential/register"))
        .bearer_auth(&iat)
        .json(&json!({ "grant_types": ["client_credentials"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rat = reg["registration_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let read: serde_json::Value = http
        .get(reg["registration_client_uri"].as_str().unwrap())
        .bearer_auth(&rat)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let newest = read["registration_access_token"]
        .as_str()
        .unwrap()
        .to_string();
    // A wrong admin key, too.
    let _ = admin
        .with_key("wrong-admin-guess-9c1d")
        .get("/v1/catalog")
        .await;
    out.extend([secret, new_secret, api_key, access, iat, rat, newest]);
    out.push(reg["client_secret"].as_str().unwrap().to_string());
    out.push("wrong-admin-guess-9c1d".into());
    out
}

/// Run every flow with the access log in `format` at the most verbose level, and search the
/// whole log for the secrets that went through.
async fn every_flow_and_no_secret_in_the_log(format: &str) -> (Upstream, Gateway, String) {
    let up = start_upstream().await;
    let key = TestKey::generate();
    let mut spec = GatewaySpec::new(catalog(&up));
    spec.https_issuer = true;
    let admin_port = free_port();
    spec.extra = format!(
        "log: {{ level: trace, access_log: {format} }}\nregistration: {{ enabled: true }}\n{}",
        common::admin::section(admin_port)
    );
    let gw = Gateway::start(spec, &key).await;
    let http = gw.client();
    let mut secrets: Vec<String> = [
        "reporting-secret",
        "legacy-secret",
        "web-secret",
        "alice-pw",
        "bob-pw",
        "wrong-guess-7f3a",
    ]
    .map(String::from)
    .to_vec();
    secrets.push(base64::engine::general_purpose::STANDARD.encode("reporting:reporting-secret"));

    // Every grant, on both families, through the oauth2 crate.
    let reporting = discovered_client(&gw, "reporting", "reporting-secret").await;
    let cc = reporting
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap();
    let pw = reporting
        .exchange_password(
            &ResourceOwnerUsername::new("alice".into()),
            &ResourceOwnerPassword::new("alice-pw".into()),
        )
        .request_async(&http)
        .await
        .unwrap();
    let refreshed = reporting
        .exchange_refresh_token(pw.refresh_token().unwrap())
        .request_async(&http)
        .await
        .unwrap();
    let legacy = family_client(&gw, "auth", "/auth/token", "legacy-key", "legacy-secret");
    let opaque = legacy
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap();
    for t in [&cc, &pw, &refreshed, &opaque] {
        secrets.push(t.access_token().secret().clone());
        if let Some(r) = t.refresh_token() {
            secrets.push(r.secret().clone());
        }
        // A JWT's signature alone is enough to replay it with its public parts.
        if let Some(sig) = t.access_token().secret().rsplit('.').next() {
            secrets.push(sig.to_string());
        }
    }

    // Use them: proxied calls, introspection, revocation, failures of every kind.
    for t in [&cc, &refreshed, &opaque] {
        assert_eq!(call(&gw, "/orders/1", t.access_token().secret()).await, 200);
    }
    reporting
        .introspect(refreshed.access_token())
        .request_async(&http)
        .await
        .unwrap();
    reporting
        .revoke_token(StandardRevocableToken::AccessToken(
            cc.access_token().clone(),
        ))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(
        call(&gw, "/orders/1", cc.access_token().secret()).await,
        401
    );
    let _ = reporting
        .exchange_refresh_token(pw.refresh_token().unwrap())
        .request_async(&http)
        .await;
    let wrong = discovered_client(&gw, "reporting", "wrong-guess-7f3a").await;
    let _ = wrong
        .exchange_client_credentials()
        .request_async(&http)
        .await;
    let _ = reporting
        .exchange_password(
            &ResourceOwnerUsername::new("alice".into()),
            &ResourceOwnerPassword::new("wrong-guess-7f3a".into()),
        )
        .request_async(&http)
        .await;
    // Secrets in a URL's query string, allowed and refused.
    for path in ["/auth/token", "/credential/token"] {
        let url = format!(
            "{}{path}?grant_type=client_credentials&client_id=legacy-key&client_secret=legacy-secret",
            gw.base
        );
        let _ = http.get(url).send().await.unwrap();
    }
    // A bare Authorization header, a broken one, and a token in a query string.
    let t = refreshed.access_token().secret();
    let _ = http
        .get(format!("{}/orders/1", gw.base))
        .header("authorization", t)
        .send()
        .await;
    let _ = http
        .get(format!("{}/orders/1", gw.base))
        .header("authorization", format!("Bearer {t}x"))
        .send()
        .await;
    let _ = http
        .get(format!("{}/orders/1?token={t}", gw.base))
        .bearer_auth(t)
        .send()
        .await;

    secrets.extend(provisioning_flows(&gw, admin_port).await);

    let log = gw.log();
    assert!(log.lines().count() > 20, "the gateway logged: {log}");
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "verbose logging was on"
    );
    for s in &secrets {
        for (n, line) in log.lines().enumerate() {
            assert!(
                !line.contains(s.as_str()),
                "line {n} of the log holds a secret: {line}"
            );
        }
    }
    // Nor do the hashes, or the signing key.
    let upstreams = std::fs::read_to_string(gw.dir.path().join("upstreams.yaml")).unwrap();
    for hash in upstreams.split('"').filter(|s| s.starts_with("$argon2")) {
        assert!(!log.contains(hash), "a password hash was logged");
    }
    for line in key.pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!log.contains(line), "the signing key was logged");
    }
    let metrics = gw.metrics().await;
    for s in &secrets {
        assert!(
            !metrics.contains(s.as_str()),
            "a secret reached the metrics"
        );
    }
    (up, gw, log)
}

#[tokio::test]
async fn request_ids_and_traces_follow_the_request() {
    let up = start_upstream().await;
    let mut spec = GatewaySpec::new(format!(
        "apis:\n  - {{ name: open, prefix: /open, upstream: {{ servers: [\"{}\"] }}, auth: none }}\n",
        up.addr
    ));
    spec.extra = "log: { start_traces: true }\n".into();
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    let get = |headers: Vec<(&'static str, String)>| {
        let mut r = reqwest::Client::new().get(gw.url("/open/x"));
        for (n, v) in headers {
            r = r.header(n, v);
        }
        r.send()
    };
    // The client's id, when it is a sane one, goes upstream and comes back.
    let r = get(vec![("x-request-id", "order-42.retry:1".into())])
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "order-42.retry:1");
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["x-request-id"], "order-42.retry:1");
    // Anything else is replaced by one of the gateway's, the same upstream and back.
    let r = get(vec![("x-request-id", "bad id\"".into())])
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    let echo: serde_json::Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["x-request-id"], id.as_str());
    // A trace context is passed on as it came, or started when there is none.
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let echo: serde_json::Value = get(vec![("traceparent", tp.into())])
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["traceparent"], tp);
    let echo: serde_json::Value = get(vec![]).await.unwrap().json().await.unwrap();
    let started = echo["headers"]["traceparent"].as_str().unwrap();
    assert!(started.starts_with("00-") && started.ends_with("-01") && started.len() == 55);
    // Answers the gateway makes itself carry the id too.
    let r = reqwest::get(gw.url("/nowhere")).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-request-id"].len(), 32);
    let r = reqwest::get(gw.url("/.well-known/jwks.json"))
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"].len(), 32);
}
