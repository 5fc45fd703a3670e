//! Dynamic client registration (RFC 7591) and its management protocol (RFC 7592) against
//! the real gateway: discovery names the endpoint; the admin API issues initial access
//! tokens (single use, reusable, expiring); a registered client gets tokens at the token
//! endpoint and calls its API through the proxy to a real upstream, and nothing beyond its
//! grant; metadata is checked as RFC 7591 §3.2.2 names the errors; the registration access
//! token reads, replaces and deletes the registration, and a deleted client's tokens die.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "registration/support.rs"]
mod support;

use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::*;

#[tokio::test]
async fn discovery_advertises_the_registration_endpoint_only_when_enabled() {
    let on = Env::start(ENABLED).await;
    let off = Env::start("").await;
    let endpoint = on.gw.url(REGISTER);
    for name in ["oauth-authorization-server", "openid-configuration"] {
        let path = format!("/.well-known/{name}");
        let doc = json_at(on.gw.url(&path)).await;
        assert_eq!(doc["registration_endpoint"], endpoint, "{path}: {doc}");
        let methods = &doc["token_endpoint_auth_methods_supported"];
        assert!(methods.as_array().unwrap().contains(&json!("none")));
        let grants = doc["grant_types_supported"].as_array().unwrap();
        assert!(grants.contains(&json!("client_credentials")), "{path}");

        let doc = json_at(off.gw.url(&path)).await;
        assert_eq!(doc["issuer"], off.gw.base, "{path}: {doc}");
        assert!(doc.get("registration_endpoint").is_none(), "{path}: {doc}");
    }
    // Off: there is no endpoint.
    let cc = json!({"grant_types": ["client_credentials"]});
    assert_eq!(off.register("", cc).await.status, 404);
}

#[tokio::test]
async fn a_registered_client_calls_its_api_and_nothing_beyond_its_grant() {
    let env = Env::start(ENABLED).await;
    // Only a key with registration:write issues initial access tokens, and only for what
    // exists.
    let reader = env.admin.with_key(admin::READER);
    let path = "/v1/initial-access-tokens";
    let denied = reader.post(path, json!({"acl": ["orders"]})).await;
    assert_eq!(denied.status, 403, "{:?}", denied.body);
    let bad = env.admin.post(path, json!({"acl": ["nowhere"]})).await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);

    let grant = json!({"acl": ["orders"], "roles": ["orders:read", "orders:write"]});
    let iat = env.initial_token(grant).await;
    let meta = json!({
        "client_name": "Order sync",
        "grant_types": ["client_credentials"],
        "scope": "orders:read billing:read",
        "contacts": ["ops@example.test"],
    });
    let c = env.registered(&iat, meta).await;
    let b = &c.body;
    assert!(c.secret.starts_with("tgs_"), "{b}");
    assert_eq!(b["client_secret_expires_at"], 0, "{b}");
    assert_eq!(c.uri, env.gw.url(&format!("{REGISTER}/{}", c.id)));
    let issued = b["client_id_issued_at"].as_i64().unwrap();
    assert!(issued >= unix_now() - 60, "{b}");
    // The metadata as registered: the scope narrowed to what the token grants.
    assert_eq!(b["client_name"], "Order sync", "{b}");
    assert_eq!(b["contacts"], json!(["ops@example.test"]), "{b}");
    assert_eq!(b["grant_types"], json!(["client_credentials"]), "{b}");
    assert_eq!(b["response_types"], json!([]), "{b}");
    assert_eq!(b["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(b["scope"], "orders:read", "{b}");

    // The client gets a token and reaches the upstream through the gateway.
    let (status, t) = env.token(&c.id, &c.secret).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["scope"], "orders:read", "{t}");
    let token = t["access_token"].as_str().unwrap();
    let (status, echo) = env.api("GET", "/orders/1", token).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["path"], "/orders/1");
    // Beyond the grant: another API, and a write its narrowed scope does not cover.
    assert_eq!(env.api("GET", "/billing/1", token).await.0, 401);
    assert_eq!(env.api("POST", "/orders/1", token).await.0, 403);
    // A secret that is not the issued one.
    let (status, body) = env.token(&c.id, "not-the-secret").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");
}

#[tokio::test]
async fn initial_access_tokens_are_single_use_unless_reusable_and_expire() {
    let env = Env::start(ENABLED).await;
    let grant = json!({"acl": ["orders"], "roles": ["orders:read"]});
    let cc = json!({"grant_types": ["client_credentials"]});

    let once = env.initial_token(grant.clone()).await;
    assert_eq!(env.register(&once, cc.clone()).await.status, 201);
    let again = env.register(&once, cc.clone()).await;
    again.invalid_token("a used single-use token");

    // Raced: of six registrations presenting one single-use token, exactly one wins.
    let raced = env.initial_token(grant.clone()).await;
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let req = reqwest::Client::new().post(env.gw.url(REGISTER));
        let req = req.bearer_auth(&raced).json(&cc);
        racers.spawn(async move { req.send().await.unwrap().status().as_u16() });
    }
    let mut statuses = racers.join_all().await;
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 401, 401, 401, 401, 401]);

    let reusable = set(grant.clone(), "reusable", json!(true));
    let many = env.initial_token(reusable.clone()).await;
    let first = env.registered(&many, cc.clone()).await;
    let second = env.registered(&many, cc.clone()).await;
    assert_ne!(first.id, second.id);

    let unknown = env.register("tgi_unknown", cc.clone()).await;
    unknown.invalid_token("an unknown token");
    let none = env.register("", cc.clone()).await;
    none.invalid_token("no token, registration not open");
    let basic = reqwest::Client::new().post(env.gw.url(REGISTER)).json(&cc);
    let basic = Answer::of(basic.basic_auth("someone", Some("secret"))).await;
    basic.invalid_token("Basic credentials");
    let r = reqwest::get(env.gw.url(REGISTER)).await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");

    // A reusable token that lives two seconds works at once, and not after it expires.
    let short = set(reusable, "expires_in", json!("2s"));
    let short = env.initial_token(short).await;
    env.registered(&short, cc.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = env.register(&short, cc.clone()).await;
        if a.status == 401 {
            a.invalid_token("an expired token");
            break;
        }
        assert_eq!(a.status, 201, "{}", a.body);
        assert!(Instant::now() < deadline, "still usable after 10 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn open_registration_grants_what_the_config_says_without_a_token() {
    let open = "  open: { acl: [orders], roles: [orders:read] }\n";
    let env = Env::start(&format!("{ENABLED}{open}")).await;
    let cc = json!({"grant_types": ["client_credentials"]});
    let c = Reg::of(env.register("", cc.clone()).await);
    assert_eq!(c.body["scope"], "orders:read", "{}", c.body);
    let token = env.access(&c).await;
    assert_eq!(env.api("GET", "/orders/7", &token).await.0, 200);
    // A token, when one is sent, is still checked.
    let a = env.register("tgi_unknown", cc).await;
    a.invalid_token("an unknown token with open registration");
}

/// Metadata RFC 7591 §3.2.2 refuses, with the error it names.
#[rustfmt::skip]
fn refused_metadata() -> Vec<(&'static str, &'static str, Value)> {
    let (redirect, metadata) = ("invalid_redirect_uri", "invalid_client_metadata");
    let code = |uris: Value| json!({"grant_types": ["authorization_code"], "redirect_uris": uris});
    let cc = |extra: Value| {
        let mut m = json!({"grant_types": ["client_credentials"]});
        m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        m
    };
    let https = "https://app.example/cb";
    vec![
        ("non-loopback http", redirect, code(json!(["http://evil.example/cb"]))),
        ("a fragment", redirect, code(json!(["https://app.example/cb#frag"]))),
        ("a relative URI", redirect, code(json!(["/cb"]))),
        ("the code grant, no redirect URI", redirect, code(json!([]))),
        ("redirect_uris not a list", metadata, code(json!(https))),
        ("public, client_credentials", metadata, cc(json!({"token_endpoint_auth_method": "none"}))),
        ("private_key_jwt", metadata, cc(json!({"token_endpoint_auth_method": "private_key_jwt"}))),
        ("code without its grant", metadata, cc(json!({"response_types": ["code"]}))),
        ("client_name not a string", metadata, cc(json!({"client_name": 7}))),
        ("scope not a string", metadata, cc(json!({"scope": ["orders:read"]}))),
        ("dpop flag not a bool", metadata, cc(json!({"dpop_bound_access_tokens": "yes"}))),
        ("implicit", metadata, json!({
            "grant_types": ["authorization_code"], "response_types": ["code", "token"], "redirect_uris": [https],
        })),
        ("the code grant, no code", metadata, json!({
            "grant_types": ["authorization_code"], "response_types": [], "redirect_uris": [https],
        })),
    ]
}

#[tokio::test]
async fn client_metadata_is_checked_as_rfc_7591_names_the_errors() {
    let env = Env::start(ENABLED).await;
    let iat = env.initial_token(staff_grant(true)).await;
    for (what, error, meta) in refused_metadata() {
        env.register(&iat, meta).await.error(error, what);
    }

    // Bodies that are not a JSON object of metadata.
    let form = "application/x-www-form-urlencoded";
    let form = (form, "grant_types=client_credentials");
    let text = ("text/plain", r#"{"grant_types": ["client_credentials"]}"#);
    let json = "application/json";
    let broken = (json, r#"{"grant_types": ["#);
    for (what, (content_type, body)) in [
        ("broken", broken),
        ("array", (json, "[]")),
        ("form", form),
        ("text", text),
    ] {
        let req = reqwest::Client::new().post(env.gw.url(REGISTER));
        let req = req.bearer_auth(&iat).header("content-type", content_type);
        let a = Answer::of(req.body(body)).await;
        a.error("invalid_client_metadata", what);
    }

    // The code grant needs a token that names a user pool.
    let code =
        json!({"grant_types": ["authorization_code"], "redirect_uris": ["https://app.example/cb"]});
    let no_pool = env.initial_token(json!({"acl": ["orders"]})).await;
    let a = env.register(&no_pool, code.clone()).await;
    a.error("invalid_client_metadata", "the code grant, no user pool");

    // The reusable token still registers a well-formed client.
    let c = env.registered(&iat, code).await;
    assert_eq!(c.body["response_types"], json!(["code"]), "{}", c.body);
}

#[tokio::test]
async fn the_registration_access_token_reads_replaces_and_deletes_its_client() {
    let env = Env::start(ENABLED).await;
    let iat = env.initial_token(staff_grant(true)).await;
    let (cb_one, cb_two) = ("http://127.0.0.1/cb-one", "http://127.0.0.1/cb-two");
    let grants = json!(["authorization_code", "client_credentials"]);
    let meta = json!({"client_name": "Reports", "grant_types": grants, "redirect_uris": [cb_one]});
    let c = env.registered(&iat, meta).await;
    let (id, uri) = (c.id.as_str(), c.uri.as_str());
    let cc = json!({"grant_types": ["client_credentials"]});
    let other = env.registered(&iat, cc.clone()).await;
    // Each answer carries a new registration access token (only its digest is kept, and
    // RFC 7592 §3 requires one): the client keeps the newest, the previous is refused.
    let newest = |a: &Answer| {
        a.body["registration_access_token"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // Read: the metadata, never the secret.
    let read = env.read(uri, &c.rat).await;
    let b = read.ok(200);
    assert_eq!(read.cache, "no-store");
    assert_eq!(b["client_id"], id, "{b}");
    assert_eq!(b["client_name"], "Reports", "{b}");
    assert_eq!(b["redirect_uris"], json!([cb_one]), "{b}");
    assert_eq!(b["registration_client_uri"], uri, "{b}");
    assert!(b.get("client_secret").is_none(), "{b}");
    let mut rat = newest(&read);
    assert_ne!(rat, c.rat);
    env.read(uri, &c.rat)
        .await
        .invalid_token("the token the read replaced");
    // Another client's token, none, or a token for a client that does not exist.
    let a = env.read(uri, &other.rat).await;
    a.invalid_token("another client's token");
    env.read(uri, "").await.invalid_token("no token");
    let nobody = env.gw.url(&format!("{REGISTER}/tgc_nobody"));
    env.read(&nobody, &rat).await.invalid_token("unknown");

    assert_eq!(env.authorize(id, cb_one).await, 200);
    assert_eq!(env.authorize(id, cb_two).await, 400);

    // Replace: a new name and redirect URI, visible in a read and in effect.
    let mut replaced = json!({
        "client_id": id, "client_name": "Reports v2", "grant_types": grants, "redirect_uris": [cb_two],
    });
    let put = env.put(uri, &rat, &replaced).await;
    assert_eq!(put.ok(200)["client_name"], "Reports v2");
    rat = newest(&put);
    let read = env.read(uri, &rat).await;
    assert_eq!(read.ok(200)["client_name"], "Reports v2");
    assert_eq!(read.body["redirect_uris"], json!([cb_two]), "{}", read.body);
    rat = newest(&read);
    assert_eq!(env.authorize(id, cb_one).await, 400);
    assert_eq!(env.authorize(id, cb_two).await, 200);
    // The secret issued at registration still works.
    let token = env.access(&c).await;
    assert_eq!(env.api("GET", "/orders/1", &token).await.0, 200);

    // Replacements that are refused, and leave the registration as it was.
    let with = |key: &str, value| (key.to_string(), set(replaced.clone(), key, value));
    let refused = [
        with("client_id", json!(other.id)),
        with("client_id", Value::Null),
        with("registration_access_token", json!(rat)),
        with("client_id_issued_at", json!(0)),
        with("token_endpoint_auth_method", json!("none")),
        // RFC 7592 §2.2: a client_secret sent along must be the client's.
        with("client_secret", json!("chosen-by-the-client")),
    ];
    for (what, body) in refused {
        let a = env.put(uri, &rat, &body).await;
        a.error("invalid_client_metadata", &what);
    }
    let a = env.put(uri, &other.rat, &replaced).await;
    a.invalid_token("PUT, another client's token");
    let read = env.read(uri, &rat).await;
    assert_eq!(read.ok(200)["client_name"], "Reports v2");
    rat = newest(&read);
    assert_eq!(env.token(id, "chosen-by-the-client").await.0, 401);
    // Its own secret may be sent along; it is not shown back.
    replaced["client_secret"] = json!(c.secret);
    let put = env.put(uri, &rat, &replaced).await;
    assert!(put.ok(200).get("client_secret").is_none(), "{}", put.body);
    rat = newest(&put);
    env.access(&c).await;
    // The registration access token is for the configuration endpoint only.
    assert_eq!(env.api("GET", "/orders/1", &rat).await.0, 401);
    let a = env.register(&rat, cc).await;
    a.invalid_token("a registration access token as an initial access token");

    // Delete: only with its own token; then its access token, its registration access
    // token and its secret are refused.
    let env = &env;
    let delete = |token: String| async move { env.manage("DELETE", uri, &token, None).await };
    delete(other.rat.clone())
        .await
        .invalid_token("DELETE, other's");
    assert_eq!(delete(rat.clone()).await.ok(204), &Value::Null);
    assert_eq!(env.api("GET", "/orders/1", &token).await.0, 401);
    env.read(uri, &rat).await.invalid_token("deleted");
    delete(rat.clone()).await.invalid_token("deleted twice");
    let (status, body) = env.token(id, &c.secret).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");
    // The other client is untouched.
    env.read(&other.uri, &other.rat).await.ok(200);
    env.access(&other).await;
}

#[tokio::test]
async fn a_public_client_registers_without_a_secret() {
    let env = Env::start(ENABLED).await;
    let iat = env.initial_token(staff_grant(false)).await;
    let cb = "http://127.0.0.1/callback";
    let grants = json!(["authorization_code", "refresh_token"]);
    let meta = json!({
        "client_name": "Orders SPA",
        "token_endpoint_auth_method": "none",
        "grant_types": grants,
        "response_types": ["code"],
        "redirect_uris": [cb],
    });
    let c = env.registered(&iat, meta).await;
    let b = &c.body;
    assert!(b.get("client_secret").is_none(), "{b}");
    assert!(b.get("client_secret_expires_at").is_none(), "{b}");
    assert_eq!(b["token_endpoint_auth_method"], "none", "{b}");
    assert_eq!(b["grant_types"], grants, "{b}");
    assert_eq!(b["response_types"], json!(["code"]), "{b}");
    assert_eq!(b["redirect_uris"], json!([cb]), "{b}");

    // The authorization endpoint knows it and its redirect URI, and no other.
    assert_eq!(env.authorize(&c.id, cb).await, 200);
    let elsewhere = "http://127.0.0.1/elsewhere";
    assert_eq!(env.authorize(&c.id, elsewhere).await, 400);
    // No secret, no client_credentials token.
    let form = [("grant_type", "client_credentials"), ("client_id", &c.id)];
    let r = reqwest::Client::new().post(env.gw.url("/credential/jwt"));
    let r = r.form(&form).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client", "{body}");
    // Its registration is managed like any other.
    let read = env.read(&c.uri, &c.rat).await;
    assert_eq!(read.ok(200)["token_endpoint_auth_method"], "none");
}
