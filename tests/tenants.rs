//! The seed-003 tenant endpoints against the real gateway: `/auth/{user,admin}/generateToken`
//! (a tenant's client proves a secret over HTTP Basic for one of its project's users) and
//! `/auth/{user,admin}/oidcToken` (the application's bearer token and the user's token from
//! the tenant's identity provider), with the error statuses the seed shows; admin tokens
//! only for a project's administrators.

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

fn tenant_catalog(up: &Upstream, jwks: &str) -> String {
    format!(
        r#"
issuers:
{issuer}
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{addr}"] }}
    auth: jwt
    rules: [{{ methods: [GET], path: "/orders/**", all_of: [orders:read] }}]
tenants:
  - id: acme
    apis: [orders]
    access_token_lifetime: 10m
    oidc_issuers: [corp]
    projects:
      - id: web
        clients:
          - client_id: acme-web
            secrets:
              - {{ id: s1, hash: "{s1}" }}
              - {{ id: s2, hash: "{s2}" }}
        users:
          - {{ email: Alice@Acme.test, roles: [buyer], scopes: [orders:read], resources: ["orders/*"], groups: [eu] }}
          - {{ email: root@acme.test, roles: [owner], scopes: [orders:read], admin: true }}
      - id: mobile
        clients:
          - client_id: acme-mobile
            secrets: [{{ id: m1, hash: "{s1}" }}]
"#,
        issuer = issuer_yaml("corp", CORP, jwks, ""),
        addr = up.addr,
        s1 = cheap_hash("first-secret"),
        s2 = cheap_hash("second-secret"),
    )
}

async fn generate(
    gw: &Gateway,
    who: &str,
    basic: Option<(&str, &str)>,
    body: &Value,
) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .post(gw.url(&format!("/auth/{who}/generateToken")))
        .json(body);
    if let Some((id, secret)) = basic {
        r = r.basic_auth(id, Some(secret));
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenant_endpoints_answer_as_seed_003_says() {
    let up = start_upstream().await;
    let key = Key::es256("corp-1");
    let jwks = JwksServer::start(&[&key]).await;
    let gw = Gateway::start(
        GatewaySpec::new(tenant_catalog(&up, &jwks.url())),
        &TestKey::generate(),
    )
    .await;
    let body = json!({"client_id": "acme-web", "email_id": "alice@acme.test",
                      "project_id": "web", "tenant_id": "acme"});
    let creds = Some(("acme-web", "second-secret"));
    let (status, v) = generate(&gw, "user", creds, &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
    assert_eq!(
        (v["expires_in"].as_u64(), v["token_type"].as_str()),
        (Some(600), Some("Bearer"))
    );
    let at = v["access_token"].as_str().unwrap();
    let c = common::oauth::claims(at);
    assert_eq!(c["tenant_id"], "acme");
    assert_eq!(c["project_id"], "web");
    assert_eq!(c["email"], "alice@acme.test");
    assert_eq!(c["roles"], json!(["buyer"]));
    assert_eq!(c["resources"], json!(["orders/*"]));
    assert_eq!(c["groups"], json!(["eu"]));
    assert_eq!(c["token_use"], "user");
    assert_eq!(bearer(&gw, "/orders/1", at).await, 200);

    // secret_id names which secret must be proved.
    let mut with_id = body.clone();
    with_id["secret_id"] = json!("s1");
    assert_eq!(generate(&gw, "user", creds, &with_id).await.0, 401);
    with_id["secret_id"] = json!("s2");
    assert_eq!(generate(&gw, "user", creds, &with_id).await.0, 200);
    with_id["secret_id"] = json!("s9");
    assert_eq!(generate(&gw, "user", creds, &with_id).await.0, 401);
    // 401: no or wrong credentials, or another client's. A client that sends only the
    // seed's JSON body is told how to authenticate.
    let (status, v) = generate(&gw, "user", None, &body).await;
    assert_eq!((status, v["error"].as_str()), (401, Some("invalid_client")));
    let why = v["error_description"].as_str().unwrap();
    assert!(
        why.contains("HTTP Basic") && why.contains("secret_id"),
        "{why}"
    );
    let r = reqwest::Client::new()
        .post(gw.url("/auth/user/generateToken"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"tollgate\"");
    assert_eq!(
        generate(&gw, "user", Some(("acme-web", "nope")), &body)
            .await
            .0,
        401
    );
    assert_eq!(
        generate(&gw, "user", Some(("acme-mobile", "first-secret")), &body)
            .await
            .0,
        401
    );
    // 404: no such tenant, project or client (a client of another project included).
    for (k, v) in [
        ("tenant_id", "globex"),
        ("project_id", "nope"),
        ("client_id", "acme-mobile"),
    ] {
        let mut b = body.clone();
        b[k] = json!(v);
        let (status, e) = generate(&gw, "user", creds, &b).await;
        assert_eq!(
            (status, e["error_description"].as_str()),
            (404, Some("Client not found")),
            "{k}"
        );
    }
    // 400: not the payload the seed shows.
    for bad in [
        json!({"client_id": "acme-web"}),
        json!({"client_id": 5, "email_id": "a", "project_id": "web", "tenant_id": "acme"}),
        json!([1]),
    ] {
        assert_eq!(generate(&gw, "user", creds, &bad).await.0, 400, "{bad}");
    }
    let r = reqwest::Client::new()
        .post(gw.url("/auth/user/generateToken"))
        .basic_auth("acme-web", Some("second-secret"))
        .body("not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Admin tokens only for administrators.
    let (status, _) = generate(&gw, "admin", creds, &body).await;
    assert_eq!(status, 401);
    let mut root = body.clone();
    root["email_id"] = json!("root@acme.test");
    let (status, v) = generate(&gw, "admin", creds, &root).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        common::oauth::claims(v["access_token"].as_str().unwrap())["token_use"],
        "admin"
    );

    // oidcToken: the application's bearer token, the user's token from the tenant's issuer.
    let app = access_token(&gw, "/credential/jwt", "acme-web", "first-secret").await;
    let oidc = |token: String| json!({ "oidc_token": token });
    let post = |who: &'static str, auth: Option<String>, body: Value| {
        let url = gw.url(&format!("/auth/{who}/oidcToken"));
        async move {
            let mut r = reqwest::Client::new().post(url).json(&body);
            if let Some(a) = auth {
                r = r.bearer_auth(a);
            }
            let r = r.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let user_token = corp_token(
        &key,
        json!({"email": "ALICE@acme.test", "email_verified": true}),
    );
    let (status, v) = post("user", Some(app.clone()), oidc(user_token)).await;
    assert_eq!(status, 200, "{v}");
    let c = common::oauth::claims(v["access_token"].as_str().unwrap());
    assert_eq!(
        (c["email"].as_str(), c["tenant_id"].as_str()),
        (Some("alice@acme.test"), Some("acme"))
    );
    assert_eq!(
        post(
            "user",
            None,
            oidc(corp_token(&key, json!({"email": "alice@acme.test"})))
        )
        .await
        .0,
        401
    );
    assert_eq!(
        post("user", Some(app.clone()), oidc("garbage".into()))
            .await
            .0,
        401
    );
    assert_eq!(
        post(
            "user",
            Some(app.clone()),
            oidc(corp_token(
                &key,
                json!({"email": "alice@acme.test", "email_verified": false})
            ))
        )
        .await
        .0,
        401
    );
    assert_eq!(
        post(
            "admin",
            Some(app.clone()),
            oidc(corp_token(&key, json!({"email": "alice@acme.test"})))
        )
        .await
        .0,
        401
    );
    assert_eq!(
        post(
            "admin",
            Some(app.clone()),
            oidc(corp_token(&key, json!({"email": "root@acme.test"})))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        post("user", Some(app.clone()), json!({"token": "x"}))
            .await
            .0,
        400
    );
}
