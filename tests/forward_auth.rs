//! The forward-auth decision endpoint: asked directly the way Traefik, Caddy and Envoy
//! ask, and behind a real Debian nginx using `auth_request` — allowed (identity headers
//! copied to nginx's upstream, a client's forged ones overwritten), refused with the
//! challenge passed on to the client, and refused for scope.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::nginx::Nginx;
use common::{Gateway, GatewaySpec, TestKey, access_token, cheap_hash, free_port, start_upstream};
use serde_json::Value;

const SECRET: &str = "app-secret";

async fn start() -> (common::Upstream, Gateway, u16) {
    let up = start_upstream().await;
    let upstreams = format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{up}"] }}
    auth: jwt
    rate_limit: {{ requests: 100, per: 1s, burst: 100 }}
    rules:
      - {{ methods: [GET], path: "/orders/docs/**", auth: none }}
      - {{ methods: [POST], path: "/orders/**", all_of: [orders:write] }}
credentials:
  - client_id: app
    client_secret_hash: "{h}"
    acl: [orders]
    roles: [orders:read]
"#,
        up = up.addr,
        h = cheap_hash(SECRET)
    );
    let decisions = free_port();
    let mut spec = GatewaySpec::new(upstreams);
    spec.extra = format!("forward_auth: {{ listen: 127.0.0.1:{decisions} }}\n");
    let gw = Gateway::start(spec, &TestKey::generate()).await;
    // The decision listener starts with the gateway; wait until it answers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", decisions))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no forward-auth listener"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    (up, gw, decisions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decisions_as_traefik_caddy_and_envoy_ask_for_them() {
    let (_up, gw, decisions) = start().await;
    let jwt = access_token(&gw, "/credential/jwt", "app", SECRET).await;
    let client = reqwest::Client::new();
    let ask = |path: &str| client.get(format!("http://127.0.0.1:{decisions}{path}"));

    // Traefik and Caddy: the original request in X-Forwarded-*; a forged identity header
    // in the client's request is not what comes back.
    let r = ask("/")
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/orders/1?x=1")
        .header("x-forwarded-host", "shop.example")
        .header("authorization", format!("Bearer {jwt}"))
        .header("x-auth-subject", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-auth-subject"], "app");
    assert_eq!(h["x-auth-client-id"], "app");
    assert_eq!(h["x-auth-scope"], "orders:read");
    assert_eq!(h["x-auth-method"], "jwt");
    assert!(h.contains_key("ratelimit-remaining"));

    // Envoy: the original method and path are the request's own.
    let r = ask("/orders/7")
        .header("authorization", format!("Bearer {jwt}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-auth-subject"], "app");

    // Refusals are the proxy's own: 401 with the challenge, 403 for scope.
    let r = ask("/")
        .header("x-forwarded-uri", "/orders/1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"tollgate\"");
    let r = ask("/")
        .header("x-forwarded-method", "POST")
        .header("x-forwarded-uri", "/orders/1")
        .header("authorization", format!("Bearer {jwt}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let www = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(www.contains("insufficient_scope"), "{www}");
    // A public operation needs nothing; an unknown path matches no API.
    let r = ask("/")
        .header("x-forwarded-uri", "/orders/docs/a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = ask("/")
        .header("x-forwarded-uri", "/elsewhere")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The decision listener is not the proxy: the public listener never answers it.
    let r = reqwest::get(gw.url("/")).await.unwrap();
    assert_eq!(r.status(), 404);
}

/// The nginx configuration the README gives, with this test's ports.
fn nginx_conf(upstream: std::net::SocketAddr, decisions: u16) -> String {
    format!(
        r#"
  server {{
    listen 127.0.0.1:{{port}};
    location / {{
      auth_request /_tollgate;
      auth_request_set $auth_subject $upstream_http_x_auth_subject;
      auth_request_set $auth_client $upstream_http_x_auth_client_id;
      auth_request_set $auth_scope $upstream_http_x_auth_scope;
      auth_request_set $auth_method $upstream_http_x_auth_method;
      auth_request_set $auth_challenge $upstream_http_www_authenticate;
      proxy_set_header X-Auth-Subject $auth_subject;
      proxy_set_header X-Auth-Client-Id $auth_client;
      proxy_set_header X-Auth-Scope $auth_scope;
      proxy_set_header X-Auth-Method $auth_method;
      error_page 401 = @unauthorized;
      proxy_pass http://{upstream};
    }}
    location = /_tollgate {{
      internal;
      proxy_pass http://127.0.0.1:{decisions};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-Host $host;
    }}
    location @unauthorized {{
      add_header WWW-Authenticate $auth_challenge always;
      return 401;
    }}
  }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nginx_auth_request_admits_refuses_and_passes_the_identity_on() {
    let (up, gw, decisions) = start().await;
    let nginx = Nginx::start(&nginx_conf(up.addr, decisions)).await;
    let jwt = access_token(&gw, "/credential/jwt", "app", SECRET).await;
    let client = reqwest::Client::new();

    // Allowed: nginx's upstream gets the identity, not what the client forged.
    let r = client
        .get(nginx.url("/orders/1"))
        .bearer_auth(&jwt)
        .header("x-auth-subject", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["x-auth-subject"], "app", "{echo}");
    assert_eq!(echo["headers"]["x-auth-client-id"], "app");
    assert_eq!(echo["headers"]["x-auth-method"], "jwt");
    assert_eq!(echo["path"], "/orders/1");

    // Refused: 401 with tollgate's challenge, passed on by nginx.
    let r = client.get(nginx.url("/orders/1")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"tollgate\"");
    let r = client
        .get(nginx.url("/orders/1"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let www = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(www.contains("invalid_token"), "{www}");

    // Refused for scope: 403.
    let r = client
        .post(nginx.url("/orders/1"))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A public operation passes without a credential, and a forged identity does not.
    let r = client
        .get(nginx.url("/orders/docs/intro"))
        .header("x-auth-subject", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert!(echo["headers"].get("x-auth-subject").is_none(), "{echo}");
}
