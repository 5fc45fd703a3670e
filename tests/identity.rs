//! What the upstream receives: a real upstream that echoes each request, the real gateway
//! in front of it, and real clients. Identity headers for every way in (the gateway's JWT
//! and opaque tokens, an API key, an oidc-provider token, a tenant token), forged headers
//! removed on public and protected routes, the credential stripped or replaced by a
//! phantom token (verified with an independent JOSE library against the JWKS), and public
//! and protected operations under one prefix.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[allow(dead_code)]
#[path = "idp/support.rs"]
mod idp_support;

use common::{Gateway, GatewaySpec, TestKey, access_token, cheap_hash, start_upstream};
use serde_json::{Value, json};

const APP_SECRET: &str = "app-secret";
const API_KEY: &str = "tgk_identity_test_key_0123456789abcdef";

fn sha256_hex(s: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// APIs under test: `orders` (own tokens, a public operation under its prefix, a write
/// scope), `keyed` (API keys too), `open` (no auth), `hidden` (credential stripped),
/// `internal` (phantom token, with a claim header), `partner` (the external issuer).
fn upstreams(up: std::net::SocketAddr, oidc: Option<&str>) -> String {
    let h = cheap_hash(APP_SECRET);
    let sha = sha256_hex(API_KEY);
    let (issuers, partner) = match oidc {
        None => (String::new(), String::new()),
        Some(iss) => (
            format!(
                r#"
issuers:
  - name: corp
    issuer: "{iss}"
    audiences: [urn:tollgate:partner]
    algorithms: [ES256]
    keys: {{ kid_miss_cooldown: 2s, fetch_timeout: 2s }}
"#
            ),
            format!(
                r#"
  - name: partner
    prefix: /partner
    upstream: {{ servers: ["{up}"] }}
    auth: jwt
    issuers: [corp]
    identity: {{ claims: {{ x-auth-audience: aud }} }}
"#
            ),
        ),
    };
    format!(
        r#"{issuers}
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{up}"] }}
    auth: jwt
    rules:
      - {{ methods: [GET], path: "/orders/docs/**", auth: none }}
      - {{ methods: [POST], path: "/orders/**", all_of: [orders:write] }}
  - name: keyed
    prefix: /keyed
    upstream: {{ servers: ["{up}"] }}
    auth: [jwt, api_key]
  - name: open
    prefix: /open
    upstream: {{ servers: ["{up}"] }}
    auth: none
  - name: hidden
    prefix: /hidden
    upstream: {{ servers: ["{up}"] }}
    auth: [jwt, api_key]
    identity: {{ credential: strip }}
  - name: internal
    prefix: /internal
    upstream: {{ servers: ["{up}"] }}
    auth: jwt
    identity:
      credential: phantom
      claims: {{ x-auth-tenant: tenant_id }}
{partner}
credentials:
  - client_id: app
    client_secret_hash: "{h}"
    acl: [orders, keyed, hidden, internal]
    roles: [orders:read]
    api_keys: [{{ name: ci-key, sha256: {sha} }}]
tenants:
  - id: acme
    apis: [internal]
    projects:
      - id: web
        clients:
          - client_id: acme-web
            secrets: [{{ id: s1, hash: "{h}" }}]
        users:
          - {{ email: alice@acme.test, roles: [buyer], scopes: [orders:read] }}
"#
    )
}

async fn start(oidc: Option<&str>, extra: &str) -> (common::Upstream, Gateway) {
    let up = start_upstream().await;
    let mut spec = GatewaySpec::new(upstreams(up.addr, oidc));
    spec.extra = extra.to_string();
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    (up, gw)
}

/// A request through the gateway: its status and what the upstream echoed.
async fn call(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut r = reqwest::Client::new().get(gw.url(path));
    for (n, v) in headers {
        r = r.header(*n, *v);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name].as_str()
}

/// Every header the upstream got under the `x-auth-` prefix.
fn identity_of(echo: &Value) -> Value {
    Value::Object(
        echo["headers"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("x-auth-"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

const FORGED: [(&str, &str); 3] = [
    ("x-auth-subject", "admin"),
    ("x-auth-scope", "everything"),
    ("x-auth-made-up", "1"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_upstream_learns_who_called_by_every_way_in_and_never_what_a_client_forged() {
    let (_up, gw) = start(None, "").await;

    // The gateway's JWT: its subject (the client, for client_credentials), client and
    // scopes; the client's forged copies are gone.
    let jwt = access_token(&gw, "/credential/jwt", "app", APP_SECRET).await;
    let bearer = format!("Bearer {jwt}");
    let mut headers = vec![("authorization", bearer.as_str())];
    headers.extend(FORGED);
    let (status, echo) = call(&gw, "/orders/1", &headers).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(
        identity_of(&echo),
        json!({
            "x-auth-subject": "app",
            "x-auth-client-id": "app",
            "x-auth-scope": "orders:read",
            "x-auth-method": "jwt",
        })
    );
    // `keep` (the default): the credential goes on as it came.
    assert_eq!(header(&echo, "authorization"), Some(bearer.as_str()));

    // An opaque token.
    let opaque = access_token(&gw, "/credential/token", "app", APP_SECRET).await;
    assert!(opaque.starts_with("tga_"));
    let (status, echo) = call(
        &gw,
        "/orders/2",
        &[("authorization", &format!("Bearer {opaque}")), FORGED[0]],
    )
    .await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(header(&echo, "x-auth-method"), Some("opaque"));
    assert_eq!(header(&echo, "x-auth-subject"), Some("app"));
    assert_eq!(header(&echo, "x-auth-client-id"), Some("app"));

    // An API key: its credential, and the key's name (never the key).
    let (status, echo) = call(&gw, "/keyed/x", &[("x-api-key", API_KEY), FORGED[0]]).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(
        identity_of(&echo),
        json!({
            "x-auth-subject": "app",
            "x-auth-client-id": "app",
            "x-auth-scope": "orders:read",
            "x-auth-method": "api_key",
            "x-auth-credential": "ci-key",
        })
    );

    // A public route: forged identity headers are removed there too.
    let (status, echo) = call(&gw, "/open/x", &FORGED).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(identity_of(&echo), json!({}));

    // The access log names the caller, never the credential.
    assert!(
        gw.wait_for_log("via=api_key client=app sub=app").await,
        "{}",
        gw.log()
    );
    let log = gw.log();
    assert!(!log.contains(&jwt) && !log.contains(&opaque) && !log.contains(API_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn public_and_protected_operations_share_a_prefix() {
    let (_up, gw) = start(None, "").await;
    // The public operation: no credential needed, forged headers removed all the same.
    let (status, echo) = call(&gw, "/orders/docs/intro", &FORGED).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(identity_of(&echo), json!({}));
    // The rest of the prefix is protected.
    let r = reqwest::get(gw.url("/orders/1")).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    // Another method on the public path is the API's again.
    let r = reqwest::Client::new()
        .post(gw.url("/orders/docs/intro"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // POST needs orders:write, which app does not have.
    let jwt = access_token(&gw, "/credential/jwt", "app", APP_SECRET).await;
    let r = reqwest::Client::new()
        .post(gw.url("/orders/1"))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stripped_credential_never_reaches_the_upstream() {
    let (_up, gw) = start(None, "").await;
    let jwt = access_token(&gw, "/credential/jwt", "app", APP_SECRET).await;
    let (status, echo) = call(
        &gw,
        "/hidden/x",
        &[("authorization", &format!("Bearer {jwt}"))],
    )
    .await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(header(&echo, "authorization"), None);
    assert_eq!(header(&echo, "x-auth-client-id"), Some("app"));
    let (status, echo) = call(&gw, "/hidden/x", &[("x-api-key", API_KEY)]).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(header(&echo, "x-api-key"), None);
    assert_eq!(header(&echo, "x-auth-credential"), Some("ci-key"));
}

/// The gateway's JWKS as `jsonwebtoken` keys, by kid.
async fn jwks(gw: &Gateway) -> jsonwebtoken::jwk::JwkSet {
    reqwest::get(gw.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Verify a phantom token with `jsonwebtoken` (not the gateway's own code): signature by
/// a JWKS key, `iss`, `aud`, `exp`, and its type.
fn verify_phantom(token: &str, set: &jsonwebtoken::jwk::JwkSet, issuer: &str, aud: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("internal+jwt"));
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_audience(&[aud]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims
}

fn claims_of(jwt: &str) -> Value {
    common::oauth::claims(jwt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_phantom_token_replaces_the_credential_and_dies_with_it() {
    let (_up, gw) = start(None, "identity: { phantom_lifetime: 2m }\n").await;
    let set = jwks(&gw).await;
    // A tenant token (seed 003): its tenant claim is configured as a header, and travels in
    // the phantom token at its path.
    let r = reqwest::Client::new()
        .post(gw.url("/auth/user/generateToken"))
        .basic_auth("acme-web", Some(APP_SECRET))
        .json(
            &json!({"client_id": "acme-web", "email_id": "alice@acme.test",
                      "project_id": "web", "tenant_id": "acme"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tenant: Value = r.json().await.unwrap();
    let tenant_token = tenant["access_token"].as_str().unwrap().to_string();
    let (status, echo) = call(
        &gw,
        "/internal/x",
        &[("authorization", &format!("Bearer {tenant_token}"))],
    )
    .await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(header(&echo, "x-auth-tenant"), Some("acme"));
    let phantom = header(&echo, "authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap()
        .to_string();
    assert_ne!(phantom, tenant_token);
    let c = verify_phantom(&phantom, &set, &gw.base, "internal");
    assert_eq!(c["tenant_id"], "acme");
    assert_eq!(c["auth_method"], "jwt");
    assert!(c["exp"].as_i64().unwrap() <= claims_of(&tenant_token)["exp"].as_i64().unwrap());

    // The gateway's own JWT: the phantom lives no longer than the configured cap, never
    // beyond the token, and is minted once (the next request gets the same one).
    let jwt = access_token(&gw, "/credential/jwt", "app", APP_SECRET).await;
    let bearer = format!("Bearer {jwt}");
    let (status, echo) = call(&gw, "/internal/y", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200, "{echo}");
    let phantom = header(&echo, "authorization").unwrap().to_string();
    let c = verify_phantom(
        phantom.strip_prefix("Bearer ").unwrap(),
        &set,
        &gw.base,
        "internal",
    );
    assert_eq!(
        (c["sub"].as_str(), c["client_id"].as_str()),
        (Some("app"), Some("app"))
    );
    assert_eq!(c["scope"], "orders:read");
    let original = claims_of(&jwt);
    let exp = c["exp"].as_i64().unwrap();
    assert!(exp <= original["exp"].as_i64().unwrap());
    assert!(exp - c["iat"].as_i64().unwrap() <= 120);
    let (_, again) = call(&gw, "/internal/z", &[("authorization", &bearer)]).await;
    assert_eq!(header(&again, "authorization"), Some(phantom.as_str()));

    // The gateway never takes a phantom token as an access token.
    let r = reqwest::Client::new()
        .get(gw.url("/orders/1"))
        .header("authorization", &phantom)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Revoked: refused by the gateway; the upstream (which would answer 200 with its
    // echo) never sees the phantom again.
    let r = reqwest::Client::new()
        .post(gw.url("/credential/revoke"))
        .basic_auth("app", Some(APP_SECRET))
        .form(&[("token", jwt.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::new()
        .get(gw.url("/internal/y"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    assert!(
        body.get("headers").is_none(),
        "the upstream answered: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_external_issuers_token_says_which_issuer_vouched() {
    let (client, secret, resource) = ("partner-app", "partner-secret", "urn:tollgate:partner");
    let idp = idp_support::OidcProvider::start(client, secret, resource, "partner:read").await;
    let (_up, gw) = start(Some(&idp.issuer), "").await;
    let token = idp.token(client, secret, resource, "partner:read").await;
    let bearer = format!("Bearer {token}");
    // The issuer's keys are fetched in the background: poll until its tokens pass.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let echo = loop {
        let (status, echo) =
            call(&gw, "/partner/x", &[("authorization", &bearer), FORGED[0]]).await;
        if status == 200 {
            break echo;
        }
        assert!(std::time::Instant::now() < deadline, "{status} {echo}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        identity_of(&echo),
        json!({
            "x-auth-subject": client,
            "x-auth-client-id": client,
            "x-auth-scope": "partner:read",
            "x-auth-method": "external",
            "x-auth-issuer": "corp",
            "x-auth-audience": resource,
        })
    );
}
