//! DPoP (RFC 9449) end to end, against the real gateway: tokens bound at every token
//! endpoint, enforced at the proxy, server nonces, and every attack of RFC 9449 §11
//! refused before the upstream (which answers 200 to anything that reaches it).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::dpop::{DpopKey, ProofFor, jkt_of};
use common::*;
use serde_json::{Value, json};

fn catalog(up: &Upstream) -> String {
    format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{up}"] }}
    auth: jwt
    rules: [{{ methods: [GET, POST], path: "/orders/**", all_of: [orders:read] }}]
  - name: vault
    prefix: /vault
    upstream: {{ servers: ["{up}"] }}
    auth: jwt
    dpop: required
user_pools:
  - name: staff
    users: [{{ username: alice, password_hash: "{alice}", roles: [orders:read] }}]
policies:
  - name: mobile
    apis: [orders]
    client_id: mobile
    client_secret_hash: "{svc}"
    public: true
    grant_types: [password]
    user_pool: staff
    token: {{ refresh: true }}
credentials:
  - client_id: svc
    client_secret_hash: "{svc}"
    acl: [orders, vault]
    roles: [orders:read]
    grant_types: [client_credentials]
    token: {{ refresh: true }}
  - client_id: bound-svc
    client_secret_hash: "{svc}"
    acl: [orders, vault]
    roles: [orders:read]
    grant_types: [client_credentials]
    dpop_bound_access_tokens: true
"#,
        up = up.addr,
        alice = cheap_hash("alice-pw"),
        svc = cheap_hash("svc-secret"),
    )
}

async fn start(extra: &str) -> (Upstream, Gateway) {
    let up = start_upstream().await;
    let mut spec = GatewaySpec::new(catalog(&up));
    spec.extra = extra.to_string();
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    (up, gw)
}

/// POST a token request with an optional proof; status, `DPoP-Nonce` and body.
async fn token_request(
    gw: &Gateway,
    path: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
    proofs: &[String],
) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new().post(gw.url(path)).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    for p in proofs {
        req = req.header("DPoP", p);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let nonce = r
        .headers()
        .get("dpop-nonce")
        .map(|v| v.to_str().unwrap().to_string());
    (status, nonce, r.json().await.unwrap_or(Value::Null))
}

const CC: &[(&str, &str)] = &[("grant_type", "client_credentials")];
const SVC: Option<(&str, &str)> = Some(("svc", "svc-secret"));

/// A DPoP-bound token from `path` for `key`.
async fn bound_token(gw: &Gateway, key: &DpopKey, path: &str) -> Value {
    let htu = gw.url(path);
    let proof = key.proof(&ProofFor {
        htm: "POST",
        htu: &htu,
        ..Default::default()
    });
    let (status, _, body) = token_request(gw, path, CC, SVC, &[proof]).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Call `path` with the given `Authorization` and proofs: status, `WWW-Authenticate`, body.
async fn call(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    authorization: &str,
    proofs: &[String],
) -> (u16, String, Value) {
    let mut req = reqwest::Client::new()
        .request(method, gw.url(path))
        .header("authorization", authorization);
    for p in proofs {
        req = req.header("DPoP", p);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, challenge, r.json().await.unwrap_or(Value::Null))
}

fn proof_for(key: &DpopKey, htm: &str, htu: &str, token: &str) -> String {
    key.proof(&ProofFor {
        htm,
        htu,
        token: Some(token),
        nonce: None,
    })
}

#[tokio::test]
async fn tokens_are_bound_at_issuance_and_pass_the_proxy_only_with_their_proof() {
    let (_up, gw) = start("").await;
    let key = DpopKey::es256();
    // A JWT from /credential/jwt: token_type DPoP, cnf.jkt the key's thumbprint.
    let jwt = bound_token(&gw, &key, "/credential/jwt").await;
    assert_eq!(jwt["token_type"], "DPoP");
    let token = jwt["access_token"].as_str().unwrap();
    assert_eq!(jkt_of(token).as_deref(), Some(key.jkt.as_str()));
    let url = gw.url("/orders/1");
    for path in ["/orders/1", "/vault/x"] {
        let u = gw.url(path);
        let (status, _, body) = call(
            &gw,
            reqwest::Method::GET,
            path,
            &format!("DPoP {token}"),
            &[proof_for(&key, "GET", &u, token)],
        )
        .await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["path"], path, "the upstream answered: {body}");
    }
    // The same token as Bearer is refused (RFC 9449 §7.2), with a DPoP challenge.
    let (status, challenge, body) = call(
        &gw,
        reqwest::Method::GET,
        "/orders/1",
        &format!("Bearer {token}"),
        &[],
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(challenge.starts_with("DPoP "), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("algs=\"ES256 EdDSA\""), "{challenge}");

    // An opaque token from /credential/token: bound in the store; introspection says so.
    let opaque = bound_token(&gw, &key, "/credential/token").await;
    assert_eq!(opaque["token_type"], "DPoP");
    let otoken = opaque["access_token"].as_str().unwrap();
    let (status, _, _) = call(
        &gw,
        reqwest::Method::POST,
        "/orders/2",
        &format!("DPoP {otoken}"),
        &[proof_for(&key, "POST", &gw.url("/orders/2"), otoken)],
    )
    .await;
    assert_eq!(status, 200);
    for t in [token, otoken] {
        let (status, _, intro) =
            token_request(&gw, "/credential/introspect", &[("token", t)], SVC, &[]).await;
        assert_eq!(status, 200);
        assert_eq!(intro["active"], true, "{intro}");
        assert_eq!(intro["token_type"], "DPoP", "{intro}");
        assert_eq!(intro["cnf"]["jkt"], key.jkt.as_str(), "{intro}");
    }

    // A bearer token passes where DPoP is allowed, not where it is required.
    let bearer = access_token(&gw, "/credential/jwt", "svc", "svc-secret").await;
    let (status, _, _) = call(
        &gw,
        reqwest::Method::GET,
        "/orders/1",
        &format!("Bearer {bearer}"),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, challenge, _) = call(
        &gw,
        reqwest::Method::GET,
        "/vault/x",
        &format!("Bearer {bearer}"),
        &[],
    )
    .await;
    assert_eq!(status, 401);
    assert!(challenge.starts_with("DPoP "), "{challenge}");
    // Under the DPoP scheme an unbound token is refused too.
    let (status, _, _) = call(
        &gw,
        reqwest::Method::GET,
        "/orders/1",
        &format!("DPoP {bearer}"),
        &[proof_for(&key, "GET", &url, &bearer)],
    )
    .await;
    assert_eq!(status, 401);

    // An EdDSA key works as well; discovery lists both algorithms.
    let ed = DpopKey::ed25519();
    let t = bound_token(&gw, &ed, "/credential/jwt").await;
    let t = t["access_token"].as_str().unwrap();
    assert_eq!(jkt_of(t).as_deref(), Some(ed.jkt.as_str()));
    let (status, _, _) = call(
        &gw,
        reqwest::Method::GET,
        "/orders/1",
        &format!("DPoP {t}"),
        &[proof_for(&ed, "GET", &url, t)],
    )
    .await;
    assert_eq!(status, 200);
    let meta: Value = reqwest::get(gw.url("/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"])
    );
    // Each API's RFC 9728 document says whether it requires DPoP.
    for (api, required) in [("vault", true), ("orders", false)] {
        let url = gw.url(&format!("/.well-known/oauth-protected-resource/{api}"));
        let doc: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        assert_eq!(doc["resource"], gw.url(&format!("/{api}")), "{doc}");
        assert_eq!(doc["authorization_servers"], json!([gw.url("")]), "{doc}");
        assert_eq!(doc["dpop_bound_access_tokens_required"], required, "{doc}");
        assert_eq!(
            doc["dpop_signing_alg_values_supported"],
            json!(["ES256", "EdDSA"])
        );
    }
    let r = reqwest::get(gw.url("/.well-known/oauth-protected-resource/nothing"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        gw.metric("tollgate_dpop_proofs_total{at=\"api\",result=\"ok\"}")
            .await
            >= 4.0
    );
}

#[tokio::test]
async fn a_client_that_requires_dpop_and_public_refresh_tokens_are_held_to_their_key() {
    let (_up, gw) = start("").await;
    // dpop_bound_access_tokens: no token without a proof.
    let (status, _, body) = token_request(
        &gw,
        "/credential/jwt",
        CC,
        Some(("bound-svc", "svc-secret")),
        &[],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_dpop_proof");
    let key = DpopKey::es256();
    let proof = key.proof(&ProofFor {
        htm: "POST",
        htu: &gw.url("/credential/jwt"),
        ..Default::default()
    });
    let (status, _, body) = token_request(
        &gw,
        "/credential/jwt",
        CC,
        Some(("bound-svc", "svc-secret")),
        &[proof],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");

    // A public client's refresh token is bound to its key (RFC 9449 §5).
    let htu = gw.url("/auth/jwt");
    let mint = |key: &DpopKey| {
        key.proof(&ProofFor {
            htm: "POST",
            htu: &htu,
            ..Default::default()
        })
    };
    let pw = [
        ("grant_type", "password"),
        ("client_id", "mobile"),
        ("username", "alice"),
        ("password", "alice-pw"),
    ];
    let (status, _, body) = token_request(&gw, "/auth/jwt", &pw, None, &[mint(&key)]).await;
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    let rf = [
        ("grant_type", "refresh_token"),
        ("client_id", "mobile"),
        ("refresh_token", refresh.as_str()),
    ];
    let other = DpopKey::es256();
    for proofs in [vec![], vec![mint(&other)]] {
        let (status, _, body) = token_request(&gw, "/auth/jwt", &rf, None, &proofs).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_dpop_proof", "{body}");
    }
    let (status, _, body) = token_request(&gw, "/auth/jwt", &rf, None, &[mint(&key)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(
        jkt_of(body["access_token"].as_str().unwrap()).as_deref(),
        Some(key.jkt.as_str())
    );
}

#[tokio::test]
async fn server_nonces_are_demanded_and_then_accepted() {
    let (_up, gw) = start("dpop:\n  nonce: { token_endpoints: true, resources: true }\n").await;
    let key = DpopKey::es256();
    let htu = gw.url("/credential/jwt");
    let with = |nonce: Option<&str>| {
        key.proof(&ProofFor {
            htm: "POST",
            htu: &htu,
            token: None,
            nonce,
        })
    };
    let (status, nonce, body) = token_request(&gw, "/credential/jwt", CC, SVC, &[with(None)]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("use_dpop_nonce")),
        "{body}"
    );
    let nonce = nonce.expect("a DPoP-Nonce with the challenge");
    let (status, next, body) =
        token_request(&gw, "/credential/jwt", CC, SVC, &[with(Some(&nonce))]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        next.is_some(),
        "a successful answer hands out the current nonce"
    );
    let token = body["access_token"].as_str().unwrap();
    // At the API: 401 use_dpop_nonce with a nonce, then the retry passes.
    let url = gw.url("/orders/1");
    let api_proof = |nonce: Option<&str>| {
        key.proof(&ProofFor {
            htm: "GET",
            htu: &url,
            token: Some(token),
            nonce,
        })
    };
    let r = reqwest::Client::new()
        .get(&url)
        .header("authorization", format!("DPoP {token}"))
        .header("DPoP", api_proof(None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("error=\"use_dpop_nonce\""),
        "{challenge}"
    );
    let nonce = r.headers()["dpop-nonce"].to_str().unwrap().to_string();
    let (status, _, _) = call(
        &gw,
        reqwest::Method::GET,
        "/orders/1",
        &format!("DPoP {token}"),
        &[api_proof(Some(&nonce))],
    )
    .await;
    assert_eq!(status, 200);
    // A made-up nonce is no nonce.
    let (status, challenge, _) = call(
        &gw,
        reqwest::Method::GET,
        "/orders/1",
        &format!("DPoP {token}"),
        &[api_proof(Some("bm90LWEtbm9uY2U"))],
    )
    .await;
    assert_eq!(status, 401);
    assert!(challenge.contains("use_dpop_nonce"), "{challenge}");
}

#[path = "dpop/attacks.rs"]
mod attacks;
