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
    let up = start_upstream().await;
    let key = TestKey::generate();
    let mut spec = GatewaySpec::new(catalog(&up));
    spec.https_issuer = true;
    spec.extra = "log: { level: trace, access_log: true }\n".into();
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
}
