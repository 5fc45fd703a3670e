//! Known JWT and bearer-token attacks (RFC 8725, RFC 9700), each against the running
//! gateway: every one is refused with 401 `invalid_token`, and nothing crashes.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn catalog(up: &Upstream) -> String {
    format!(
        r#"
apis:
  - {{ name: orders, prefix: /orders, upstream: {{ servers: ["{a}"] }}, auth: jwt }}
  - {{ name: billing, prefix: /billing, upstream: {{ servers: ["{a}"] }}, auth: jwt }}
policies:
  - name: legacy
    kind: oauth2
    apis: [billing]
    client_id: legacy-key
    client_secret_hash: "{legacy}"
    scopes: [billing:read]
    token: {{ refresh: true }}
credentials:
  - client_id: reader
    client_secret_hash: "{reader}"
    acl: [orders, billing]
    roles: [orders:read]
    token: {{ refresh: true }}
"#,
        a = up.addr,
        legacy = cheap_hash("legacy-secret"),
        reader = cheap_hash("reader-secret"),
    )
}

struct Setup {
    _up: Upstream,
    gw: Gateway,
    key: TestKey,
}

async fn setup() -> Setup {
    let up = start_upstream().await;
    let key = TestKey::generate();
    let gw = Gateway::start(GatewaySpec::new(catalog(&up)), &key).await;
    Setup { _up: up, gw, key }
}

fn b64(v: &Value) -> String {
    B64.encode(v.to_string())
}

fn good_claims(iss: &str) -> Value {
    let now = unix_now();
    json!({
        "iss": iss, "sub": "reader", "aud": "orders", "exp": now + 300, "iat": now,
        "nbf": now, "jti": "j", "client_id": "reader", "scope": "orders:read",
    })
}

/// Present `authorization` on /orders and expect a 401 naming an invalid token.
async fn assert_refused(gw: &Gateway, authorization: &str) {
    let r = reqwest::Client::new()
        .get(gw.url("/orders/1"))
        .header("authorization", authorization)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "{authorization}");
    let www = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(www.contains("error=\"invalid_token\""), "{www}");
}

async fn assert_accepted(gw: &Gateway, token: &str) {
    let r = reqwest::Client::new()
        .get(gw.url("/orders/1"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn alg_none_is_refused() {
    let s = setup().await;
    let claims = b64(&good_claims(&s.gw.base));
    for header in [
        json!({"alg": "none"}),
        json!({"alg": "None", "kid": "test-key"}),
        json!({"alg": "NONE"}),
    ] {
        assert_refused(&s.gw, &format!("Bearer {}.{claims}.", b64(&header))).await;
        assert_refused(&s.gw, &format!("Bearer {}.{claims}.AAAA", b64(&header))).await;
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    use aws_lc_rs::hmac;
    let s = setup().await;
    let jwks: Value = reqwest::get(s.gw.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = &jwks["keys"][0];
    // The classic confusion: the public key's published bytes used as an HMAC secret.
    let secrets: [Vec<u8>; 2] = [
        jwk.to_string().into_bytes(),
        s.key.public_pem().into_bytes(),
    ];
    for secret in secrets {
        let input = format!(
            "{}.{}",
            b64(&json!({"alg": "HS256", "kid": "test-key"})),
            b64(&good_claims(&s.gw.base))
        );
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &secret),
            input.as_bytes(),
        );
        assert_refused(
            &s.gw,
            &format!("Bearer {input}.{}", B64.encode(tag.as_ref())),
        )
        .await;
    }
}

#[tokio::test]
async fn an_unknown_kid_is_refused() {
    let s = setup().await;
    let t = s.key.sign(
        &json!({"alg": "ES256", "kid": "some-other-key"}),
        &good_claims(&s.gw.base),
    );
    assert_refused(&s.gw, &format!("Bearer {t}")).await;
    assert!(
        s.gw.metric("tollgate_token_validations_total{outcome=\"unknown_key\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_kid_with_path_or_quote_characters_is_refused() {
    let s = setup().await;
    for kid in [
        "../../../../dev/null",
        "test-key\"",
        "test-key' OR '1'='1",
        "/etc/passwd",
        "test-key\\",
    ] {
        let t = s.key.sign(
            &json!({"alg": "ES256", "kid": kid}),
            &good_claims(&s.gw.base),
        );
        assert_refused(&s.gw, &format!("Bearer {t}")).await;
    }
}

#[tokio::test]
async fn key_url_headers_are_ignored_and_never_fetched() {
    let s = setup().await;
    // A live server the headers point at: it must never be asked for anything.
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let attacker = TestKey::generate();
    let url = format!("http://{addr}/jwks.json");
    let header = json!({
        "alg": "ES256", "kid": "attacker", "jku": url, "x5u": url,
        "jwk": attacker.public_jwk(),
    });
    let forged = attacker.sign(&header, &good_claims(&s.gw.base));
    assert_refused(&s.gw, &format!("Bearer {forged}")).await;
    // The same headers on a token the gateway's key did sign change nothing either.
    let ours = s.key.sign(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "test-key", "jku": url, "x5u": url, "jwk": attacker.public_jwk()}),
        &good_claims(&s.gw.base),
    );
    assert_accepted(&s.gw, &ours).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the gateway fetched a key URL"
    );
}

#[tokio::test]
async fn a_crit_header_is_refused() {
    let s = setup().await;
    let t = s.key.sign(
        &json!({"alg": "ES256", "kid": "test-key", "crit": ["exp"], "exp": 0}),
        &good_claims(&s.gw.base),
    );
    assert_refused(&s.gw, &format!("Bearer {t}")).await;
}

#[tokio::test]
async fn another_keys_signature_is_refused() {
    let s = setup().await;
    let other = TestKey::generate();
    let t = other.token(&s.gw.base, json!({}));
    assert_refused(&s.gw, &format!("Bearer {t}")).await;
    assert!(
        s.gw.metric("tollgate_token_validations_total{outcome=\"bad_signature\"}")
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let s = setup().await;
    let t = s.key.token(&s.gw.base, json!({"exp": unix_now() - 120}));
    assert_refused(&s.gw, &format!("Bearer {t}")).await;
}

#[tokio::test]
async fn nbf_in_the_future_is_refused() {
    let s = setup().await;
    let t = s.key.token(&s.gw.base, json!({"nbf": unix_now() + 3600}));
    assert_refused(&s.gw, &format!("Bearer {t}")).await;
}

#[tokio::test]
async fn iat_far_in_the_future_is_refused() {
    let s = setup().await;
    let t = s.key.token(&s.gw.base, json!({"iat": unix_now() + 86_400}));
    assert_refused(&s.gw, &format!("Bearer {t}")).await;
}

#[tokio::test]
async fn a_wrong_issuer_is_refused() {
    let s = setup().await;
    let t = s.key.token("https://evil.example", json!({}));
    assert_refused(&s.gw, &format!("Bearer {t}")).await;
}

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    let s = setup().await;
    let t = s.key.token(&s.gw.base, json!({"aud": "payments"}));
    assert_refused(&s.gw, &format!("Bearer {t}")).await;
}

#[tokio::test]
async fn a_token_for_another_api_is_refused() {
    let s = setup().await;
    let r = reqwest::Client::new()
        .post(s.gw.url("/billing/oauth2/v2/token"))
        .basic_auth("reader", Some("reader-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let billing_only = v["access_token"].as_str().unwrap();
    assert_refused(&s.gw, &format!("Bearer {billing_only}")).await;
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let s = setup().await;
    let t = access_token(&s.gw, "/credential/jwt", "reader", "reader-secret").await;
    assert_accepted(&s.gw, &t).await;
    let r = reqwest::Client::new()
        .post(s.gw.url("/credential/revoke"))
        .basic_auth("reader", Some("reader-secret"))
        .form(&[("token", t.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_refused(&s.gw, &format!("Bearer {t}")).await;
}

#[tokio::test]
async fn refresh_tokens_and_other_families_opaque_tokens_are_not_bearer_tokens() {
    let s = setup().await;
    let r = get_token(&s.gw, "/credential/jwt", "reader", "reader-secret", None).await;
    let v: Value = r.json().await.unwrap();
    let refresh = v["refresh_token"].as_str().unwrap();
    assert_refused(&s.gw, &format!("Bearer {refresh}")).await;
    // An opaque token of the policy family, attached to billing only.
    let r = get_token(&s.gw, "/auth/token", "legacy-key", "legacy-secret", None).await;
    let v: Value = r.json().await.unwrap();
    let opaque = v["access_token"].as_str().unwrap();
    assert_refused(&s.gw, &format!("Bearer {opaque}")).await;
    let policy_refresh = v["refresh_token"].as_str().unwrap();
    assert_refused(&s.gw, &format!("Bearer {policy_refresh}")).await;
    // A made-up opaque token.
    assert_refused(
        &s.gw,
        "Bearer tga_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )
    .await;
}

#[tokio::test]
async fn an_oversized_authorization_header_is_refused_early() {
    let s = setup().await;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    for size in [9 * 1024, 64 * 1024] {
        let r = client
            .get(s.gw.url("/orders/1"))
            .header("authorization", format!("Bearer {}", "a".repeat(size)))
            .send()
            .await
            .unwrap();
        assert!(
            matches!(r.status().as_u16(), 431 | 400),
            "{size}: {}",
            r.status()
        );
    }
    // The token endpoints too.
    let r = client
        .post(s.gw.url("/credential/jwt"))
        .header("authorization", format!("Basic {}", "a".repeat(9 * 1024)))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    // The gateway still serves.
    let t = access_token(&s.gw, "/credential/jwt", "reader", "reader-secret").await;
    assert_accepted(&s.gw, &t).await;
}

#[tokio::test]
async fn too_many_or_too_large_header_fields_are_431() {
    let s = setup().await;
    let client = reqwest::Client::new();
    let t = access_token(&s.gw, "/credential/jwt", "reader", "reader-secret").await;
    let send = |extra: Vec<(String, String)>| {
        let mut req = client.get(s.gw.url("/orders/1")).bearer_auth(&t);
        for (k, v) in extra {
            req = req.header(k, v);
        }
        req.send()
    };
    // 100 fields in all is the default bound: a request with 120 is refused.
    let many: Vec<_> = (0..120)
        .map(|i| (format!("x-f{i}"), "1".to_string()))
        .collect();
    let r = send(many).await.unwrap();
    assert_eq!(r.status(), 431);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "request_header_fields_too_large");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("header fields")
    );
    // 60 KiB in all: 8 fields of 8 KiB are too much, though each is fine on its own.
    let big: Vec<_> = (0..8)
        .map(|i| (format!("x-b{i}"), "v".repeat(8 * 1024)))
        .collect();
    assert_eq!(send(big).await.unwrap().status(), 431);
    // Within both bounds: served.
    let fine: Vec<_> = (0..20)
        .map(|i| (format!("x-f{i}"), "v".repeat(1024)))
        .collect();
    assert_eq!(send(fine).await.unwrap().status(), 200);
}

#[tokio::test]
async fn malformed_base64url_or_json_is_refused() {
    let s = setup().await;
    let h = b64(&json!({"alg": "ES256", "kid": "test-key"}));
    let c = b64(&good_claims(&s.gw.base));
    let cases = [
        format!("{h}.{c}"),
        format!("{h}.{c}.sig.extra"),
        format!("{h}=.{c}.AAAA"),
        format!("{h}.{c}.!!!!"),
        format!("{}.{c}.AAAA", B64.encode("{\"alg\":\"ES256\"")),
        format!("{}.{c}.AAAA", B64.encode("[\"ES256\"]")),
        format!("{h}.{}.AAAA", B64.encode("not json")),
        format!("{h}.{}.AAAA", B64.encode([0xff, 0xfe, 0x00])),
        "....".to_string(),
        "Bearer".to_string(),
    ];
    for t in cases {
        assert_refused(&s.gw, &format!("Bearer {t}")).await;
    }
    // Claims that are JSON but the wrong shape, properly signed.
    let t = s.key.sign(
        &json!({"alg": "ES256", "kid": "test-key"}),
        &json!({"iss": 5, "exp": "soon"}),
    );
    assert_refused(&s.gw, &format!("Bearer {t}")).await;
}

#[tokio::test]
async fn duplicate_json_keys_are_refused() {
    let s = setup().await;
    let claims = good_claims(&s.gw.base).to_string();
    // Header with alg twice; claims with aud and scope twice, signed by the gateway's key.
    let dup_header = r#"{"alg":"ES256","kid":"test-key","alg":"none"}"#;
    let t = s.key.sign_raw(dup_header, &claims);
    assert_refused(&s.gw, &format!("Bearer {t}")).await;
    let dup_claims = claims.replacen('{', r#"{"scope":"admin","#, 1);
    let t = s
        .key
        .sign_raw(r#"{"alg":"ES256","kid":"test-key"}"#, &dup_claims);
    assert_refused(&s.gw, &format!("Bearer {t}")).await;
}
