//! RFC 8693 token exchange against the real gateway: a client trades an external identity
//! provider's token (from a JWKS server) for one of tollgate's, once, for a local user and
//! an audience it may have; expired, foreign, unknown-user, wrong-type and unauthorized
//! requests are refused, and discovery lists the grant.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "idp/corp.rs"]
mod corp;
#[path = "idp/support.rs"]
#[allow(dead_code)]
mod support;

use common::*;
use corp::{CORP, bearer, corp_token, issuer_yaml};
use serde_json::{Value, json};
use support::{JwksServer, Key};

fn exchange_catalog(up: &Upstream, jwks: &str) -> String {
    format!(
        r#"
issuers:
{issuer}
user_pools:
  - name: staff
    users: [{{ username: alice, password_hash: "{h}", roles: [orders:read, orders:write] }}]
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
credentials:
  - client_id: portal
    client_secret_hash: "{h}"
    acl: [orders, billing]
    roles: [orders:read, billing:read]
    grant_types: [token_exchange]
    user_pool: staff
    token_exchange: {{ issuers: [corp] }}
  - client_id: plain
    client_secret_hash: "{h}"
    acl: [orders]
    roles: [orders:read]
"#,
        issuer = issuer_yaml("corp", CORP, jwks, "    user_claim: preferred_username\n"),
        addr = up.addr,
        h = cheap_hash("s")
    )
}

async fn exchange(gw: &Gateway, client: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(gw.url("/credential/jwt"))
        .basic_auth(client, Some("s"))
        .form(
            &[
                &[(
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                )],
                form,
            ]
            .concat(),
        )
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_exchange_trades_an_external_token_once() {
    let up = start_upstream().await;
    let key = Key::es256("corp-1");
    let jwks = JwksServer::start(&[&key]).await;
    let gw = Gateway::start(
        GatewaySpec::new(exchange_catalog(&up, &jwks.url())),
        &TestKey::generate(),
    )
    .await;
    const ID: &str = "urn:ietf:params:oauth:token-type:id_token";
    let subject = corp_token(&key, json!({"jti": "s-1", "preferred_username": "alice"}));
    let (status, v) = exchange(
        &gw,
        "portal",
        &[
            ("subject_token", &subject),
            ("subject_token_type", ID),
            ("audience", "orders"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    let at = v["access_token"].as_str().unwrap();
    let claims = common::oauth::claims(at);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["username"], "alice");
    assert_eq!(claims["aud"], "orders", "narrowed by audience");
    // The scopes: the client's that the local user's roles grant.
    assert_eq!(claims["scope"], "orders:read");
    assert_eq!(bearer(&gw, "/orders/1", at).await, 200);
    assert_eq!(bearer(&gw, "/billing/1", at).await, 401);
    // Never twice.
    let (status, v) = exchange(
        &gw,
        "portal",
        &[("subject_token", &subject), ("subject_token_type", ID)],
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    // Expired, wrong audience, unknown local user, wrong type, a client without the grant,
    // an audience the client may not have.
    for (token, why) in [
        (
            corp_token(
                &key,
                json!({"exp": support::unix_now() - 120, "preferred_username": "alice"}),
            ),
            "expired",
        ),
        (
            corp_token(
                &key,
                json!({"aud": "another-app", "preferred_username": "alice"}),
            ),
            "audience",
        ),
        (
            corp_token(&key, json!({"preferred_username": "mallory"})),
            "user",
        ),
    ] {
        let (status, v) = exchange(
            &gw,
            "portal",
            &[("subject_token", &token), ("subject_token_type", ID)],
        )
        .await;
        assert_eq!(
            (status, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{why}: {v}"
        );
    }
    let fresh = corp_token(&key, json!({"preferred_username": "alice"}));
    let (status, v) = exchange(
        &gw,
        "portal",
        &[
            ("subject_token", &fresh),
            ("subject_token_type", "urn:example:saml"),
        ],
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_request")),
        "{v}"
    );
    let (status, v) = exchange(
        &gw,
        "plain",
        &[("subject_token", &fresh), ("subject_token_type", ID)],
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("unauthorized_client")),
        "{v}"
    );
    let (status, v) = exchange(
        &gw,
        "portal",
        &[
            ("subject_token", &fresh),
            ("subject_token_type", ID),
            ("audience", "payroll"),
        ],
    )
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (400, Some("invalid_target")),
        "{v}"
    );
    // Discovery lists the grant.
    let meta: Value = reqwest::get(gw.url("/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        meta["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("urn:ietf:params:oauth:grant-type:token-exchange"))
    );
}
