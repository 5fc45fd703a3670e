//! Provisioning at run time with real processes: gateways on one real `redis-server` (and
//! two on one SQLite file), credentials created, rotated, disabled and deleted through one
//! node's admin API and in force on the other; seed 002's subscription flow as the seed
//! writes it; restarts, store outages and concurrent updates.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::admin::{self, Admin};
use common::oauth::call;
use common::redis::{Redis, store_key_file};
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn catalog(up: &Upstream) -> String {
    format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{addr}"] }}
    auth: [jwt, api_key]
    scopes: [orders:read, orders:write]
  - name: reports
    prefix: /reports
    upstream: {{ servers: ["{addr}"] }}
    auth: jwt
    scopes: [reports:read]
products:
  - name: bundle
    apis: [orders, reports]
credentials:
  - client_id: file-client
    client_secret_hash: "{secret}"
    acl: [orders]
    roles: [orders:read]
"#,
        addr = up.addr,
        secret = cheap_hash("file-secret"),
    )
}

/// A node on `redis` with its own admin listener; returns it and its admin client.
async fn node(redis: &Redis, up: &Upstream, key: &TestKey) -> (Gateway, Admin) {
    let port = free_port();
    let mut spec = GatewaySpec::new(catalog(up));
    spec.extra = format!("{}{}", redis.store_section(), admin::section(port));
    spec.files.push(store_key_file());
    spec.issuer = Some("https://gateway.cluster.test".into());
    (Gateway::start(spec, key).await, Admin::new(port))
}

/// Poll `check` until it holds (the feed has delivered), for at most 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn token_status(gw: &Gateway, id: &str, secret: &str) -> u16 {
    get_token(gw, "/credential/jwt", id, secret, None)
        .await
        .status()
        .as_u16()
}

async fn api_key_status(gw: &Gateway, key: &str) -> u16 {
    gw.client()
        .get(gw.url("/orders/1"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_credential_made_on_one_node_is_served_rotated_and_deleted_on_the_other() {
    let redis = Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    let (a, admin_a) = node(&redis, &up, &key).await;
    let (b, admin_b) = node(&redis, &up, &key).await;

    // Created on A with a generated secret (shown once)…
    let (id, secret) = admin_a
        .create_credential(
            json!({ "client_id": "acme", "acl": ["orders"], "roles": ["orders:read"] }),
        )
        .await;
    assert_eq!(id, "acme");
    assert!(secret.starts_with("tgs_"), "{secret}");
    // …gets a token on B, which opens the API on both nodes.
    eventually("B issues a token to the new credential", || async {
        token_status(&b, &id, &secret).await == 200
    })
    .await;
    let token = access_token(&b, "/credential/jwt", &id, &secret).await;
    assert_eq!(call(&a, "/orders/1", &token).await, 200);
    assert_eq!(call(&b, "/reports/1", &token).await, 401, "not in its ACL");
    // B shows it too, without its secret.
    let shown = admin_b.get("/v1/credentials/acme").await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body["source"], "store");
    assert!(!shown.body.to_string().contains(&secret));

    // An API key made on B works on A.
    let k = admin_b
        .post("/v1/credentials/acme/api-keys", json!({ "name": "ci" }))
        .await;
    assert_eq!(k.status, 201, "{:?}", k.body);
    let api_key = k.body["api_key"].as_str().unwrap().to_string();
    eventually("A accepts the new API key", || async {
        api_key_status(&a, &api_key).await == 200
    })
    .await;

    // Rotation with an overlap: both secrets work on both nodes, then only the new one.
    // The overlap leaves room for six secret checks on a busy machine (a debug build's
    // argon2) and ends within `eventually`'s 10 s of the checks.
    let r = admin_a
        .post("/v1/credentials/acme/secret", json!({ "overlap": "8s" }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let new_secret = r.body["client_secret"].as_str().unwrap().to_string();
    eventually("B knows the new secret", || async {
        token_status(&b, &id, &new_secret).await == 200
    })
    .await;
    for gw in [&a, &b] {
        assert_eq!(
            token_status(gw, &id, &secret).await,
            200,
            "old secret, overlap"
        );
    }
    for gw in [&a, &b] {
        eventually("the old secret is refused after the overlap", || async {
            token_status(gw, &id, &secret).await == 401
        })
        .await;
        assert_eq!(token_status(gw, &id, &new_secret).await, 200);
    }

    // Disabled on B: its token, its key and its secret are refused on A; enabled again.
    let d = admin_b
        .post("/v1/credentials/acme/disable", json!({}))
        .await;
    assert_eq!((d.status, &d.body["disabled"]), (200, &json!(true)));
    eventually("A refuses the disabled credential's token", || async {
        call(&a, "/orders/1", &token).await == 401
    })
    .await;
    assert_eq!(api_key_status(&a, &api_key).await, 401);
    assert_eq!(token_status(&a, &id, &new_secret).await, 401);
    let e = admin_a.post("/v1/credentials/acme/enable", json!({})).await;
    assert_eq!(e.status, 200);
    assert_eq!(call(&a, "/orders/1", &token).await, 200);

    // Deleted on A: every token and key refused on both nodes, and the name is free again.
    let del = admin_a
        .call("DELETE", "/v1/credentials/acme", None, None)
        .await;
    assert_eq!(del.status, 204);
    for gw in [&a, &b] {
        eventually("the deleted credential's token is refused", || async {
            call(gw, "/orders/1", &token).await == 401
        })
        .await;
        assert_eq!(api_key_status(gw, &api_key).await, 401);
        assert_eq!(token_status(gw, &id, &new_secret).await, 401);
    }
    assert_eq!(admin_b.get("/v1/credentials/acme").await.status, 404);
    // Re-created under the same id, its old tokens stay revoked.
    let hash = cheap_hash("again");
    let again = admin_b
        .post(
            "/v1/credentials",
            json!({ "client_id": "acme", "acl": ["orders"], "roles": ["orders:read"], "client_secret_hash": hash }),
        )
        .await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert!(
        again.body.get("client_secret").is_none(),
        "a supplied hash: no secret shown"
    );
    eventually("A serves the re-created credential", || async {
        token_status(&a, "acme", "again").await == 200
    })
    .await;
    assert_eq!(call(&a, "/orders/1", &token).await, 401, "revoked for good");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_002_subscription_provisions_a_credential_for_the_apis_token_endpoint() {
    let redis = Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    let (a, admin_a) = node(&redis, &up, &key).await;
    let (b, admin_b) = node(&redis, &up, &key).await;

    // A product subscription: one shared credential for every member API.
    let s = admin_a
        .post(
            "/v1/subscriptions",
            json!({ "id": "sub-42", "consumer": "team-design", "product": "bundle" }),
        )
        .await;
    assert_eq!(s.status, 201, "{:?}", s.body);
    let secret = s.body["credentials"]["client_secret"]
        .as_str()
        .unwrap()
        .to_string();
    // The seed: `GET /v1/subscriptions/{id}/credentials` with a bearer token.
    let c = admin_b.get("/v1/subscriptions/sub-42/credentials").await;
    assert_eq!(c.status, 200, "{:?}", c.body);
    let id = c.body["client_id"].as_str().unwrap().to_string();
    assert!(
        c.body.get("client_secret").is_none(),
        "shown at creation only"
    );
    let endpoints: Vec<String> = c.body["token_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        endpoints,
        [
            "https://gateway.cluster.test/orders/oauth2/v2/token",
            "https://gateway.cluster.test/reports/oauth2/v2/token"
        ]
    );
    // Then, as the seed writes it, a token per member API at that API's endpoint, with
    // the credential in the form and a narrowing scope.
    for (api, scope) in [("orders", "orders:read"), ("reports", "reports:read")] {
        let form = format!(
            "grant_type=client_credentials&client_id={id}&client_secret={secret}&scope={scope}"
        );
        eventually("B mints at the API's token endpoint", || async {
            let r = reqwest::Client::new()
                .post(b.url(&format!("/{api}/oauth2/v2/token")))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form.clone())
                .send()
                .await
                .unwrap();
            r.status() == 200
        })
        .await;
        let r: Value = reqwest::Client::new()
            .post(b.url(&format!("/{api}/oauth2/v2/token")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["token_type"], "Bearer");
        assert!(r["expires_in"].as_u64().is_some());
        let t = r["access_token"].as_str().unwrap().to_string();
        let claims = common::oauth::claims(&t);
        assert_eq!(claims["aud"], api, "aud pinned to the member API");
        assert_eq!(claims["scope"], scope);
        assert_eq!(call(&a, &format!("/{api}/1"), &t).await, 200);
    }
    // Unsubscribing removes the credential everywhere.
    let d = admin_b
        .call("DELETE", "/v1/subscriptions/sub-42", None, None)
        .await;
    assert_eq!(d.status, 204);
    eventually("A refuses the unsubscribed credential", || async {
        token_status(&a, &id, &secret).await == 401
    })
    .await;
    assert_eq!(admin_a.get("/v1/subscriptions/sub-42").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_through_two_nodes_end_in_one_state() {
    let redis = Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    let (_a, admin_a) = node(&redis, &up, &key).await;
    let (_b, admin_b) = node(&redis, &up, &key).await;
    let made = admin_a
        .post(
            "/v1/credentials",
            json!({ "client_id": "shared", "acl": ["orders"], "roles": ["orders:read"], "client_secret_hash": cheap_hash("s") }),
        )
        .await;
    let v = made.version.unwrap();
    for round in 0..5 {
        let current = admin_a.get("/v1/credentials/shared").await.version.unwrap();
        let put = |admin: &Admin, role: &str| {
            let admin = admin.clone();
            let body = json!({ "acl": ["orders"], "roles": [role] });
            async move {
                admin
                    .call("PUT", "/v1/credentials/shared", Some(body), Some(current))
                    .await
            }
        };
        let (ra, rb) = tokio::join!(put(&admin_a, "orders:read"), put(&admin_b, "orders:write"));
        let mut statuses = [ra.status, rb.status];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 409],
            "round {round}: {:?} {:?}",
            ra.body,
            rb.body
        );
        let winner = if ra.status == 200 { &ra } else { &rb };
        let now = admin_b.get("/v1/credentials/shared").await;
        assert_eq!(now.version, winner.version, "round {round}");
        assert_eq!(
            now.body["settings"]["roles"],
            winner.body["settings"]["roles"]
        );
        assert!(now.version.unwrap() > v);
    }
    // A stale version is refused without a race too.
    let stale = admin_b
        .call(
            "PUT",
            "/v1/credentials/shared",
            Some(json!({ "acl": ["orders"] })),
            Some(v),
        )
        .await;
    assert_eq!(
        (stale.status, stale.body["error"].as_str()),
        (409, Some("conflict"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_outage_answers_503_and_a_restarted_node_keeps_everything() {
    let mut redis = Redis::start();
    let up = start_upstream().await;
    let key = TestKey::generate();
    let (mut a, admin_a) = node(&redis, &up, &key).await;
    admin_a
        .post(
            "/v1/credentials",
            json!({ "client_id": "kept", "acl": ["orders"], "roles": ["orders:read"], "client_secret_hash": cheap_hash("kept-secret") }),
        )
        .await;
    // A token of it, checked once (cached) before the outage.
    let kept = access_token(&a, "/credential/jwt", "kept", "kept-secret").await;
    assert_eq!(call(&a, "/orders/1", &kept).await, 200);
    // Redis down: nothing can be provisioned, and nothing half-done is left.
    redis.kill();
    let down = admin_a
        .post(
            "/v1/credentials",
            json!({ "client_id": "lost", "acl": ["orders"], "client_secret_hash": cheap_hash("x") }),
        )
        .await;
    assert_eq!(
        (down.status, down.body["error"].as_str()),
        (503, Some("temporarily_unavailable"))
    );
    // The provisioned credential is served from memory meanwhile.
    assert_eq!(call(&a, "/orders/1", &kept).await, 200);
    redis.restart();
    eventually("the store answers again", || async {
        admin_a.get("/v1/credentials/kept").await.status != 503
    })
    .await;
    // Redis restarted without persistence lost everything: the node follows (nothing is
    // served from a store that no longer holds it) and new writes work.
    eventually("the node notices the emptied store", || async {
        token_status(&a, "kept", "kept-secret").await == 401
    })
    .await;
    assert_eq!(admin_a.get("/v1/credentials/lost").await.status, 404);
    let again = admin_a
        .post(
            "/v1/credentials",
            json!({ "client_id": "kept", "acl": ["orders"], "roles": ["orders:read"], "client_secret_hash": cheap_hash("kept-secret") }),
        )
        .await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    // A restarted node reads the current state before it serves.
    a.kill();
    a.spawn().await;
    assert_eq!(token_status(&a, "kept", "kept-secret").await, 200);
    assert_eq!(token_status(&a, "file-client", "file-secret").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_sqlite_file_share_provisioned_credentials() {
    let up = start_upstream().await;
    let key = TestKey::generate();
    let shared = tempfile::tempdir().unwrap();
    let file = shared.path().join("shared.db");
    let start = || {
        let port = free_port();
        let mut spec = GatewaySpec::new(catalog(&up));
        spec.extra = format!(
            "store:\n  file: {}\n{}",
            file.display(),
            admin::section(port)
        );
        (spec, Admin::new(port))
    };
    let (spec_a, admin_a) = start();
    let (spec_b, _) = start();
    let mut a = Gateway::start(spec_a, &key).await;
    let b = Gateway::start(spec_b, &key).await;
    let made = admin_a
        .post(
            "/v1/credentials",
            json!({ "client_id": "local", "acl": ["orders"], "roles": ["orders:read"], "client_secret_hash": cheap_hash("local-secret") }),
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    eventually("the other process serves it", || async {
        token_status(&b, "local", "local-secret").await == 200
    })
    .await;
    // The file keeps it across a restart.
    a.kill();
    a.spawn().await;
    assert_eq!(token_status(&a, "local", "local-secret").await, 200);
    // A file client's id cannot be taken, and the file's entry is shown read-only.
    let clash = admin_a
        .post(
            "/v1/credentials",
            json!({ "client_id": "file-client", "acl": ["orders"] }),
        )
        .await;
    assert_eq!(
        (clash.status, clash.body["error"].as_str()),
        (409, Some("file_entry"))
    );
    let shown = admin_a.get("/v1/credentials/file-client").await;
    assert_eq!((shown.status, &shown.body["source"]), (200, &json!("file")));
    let put = admin_a
        .call(
            "PUT",
            "/v1/credentials/file-client",
            Some(json!({ "acl": ["orders"] })),
            None,
        )
        .await;
    assert_eq!(put.status, 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_listener_over_tls_can_require_a_certificate_from_its_ca() {
    use common::mtls::{Pki, client, listener_files, self_signed};
    let up = start_upstream().await;
    let key = TestKey::generate();
    let (server, pki) = (self_signed("localhost", &["localhost"]), Pki::new("ops-ca"));
    let port = free_port();
    let mut spec = GatewaySpec::new(catalog(&up));
    spec.extra = admin::section(port).replace(
        &format!("  listen: 127.0.0.1:{port}\n"),
        &format!(
            "  listen: 127.0.0.1:{port}\n  tls: {{ cert: server.pem, key: server-key.pem, client_certificates: require, client_ca: client-ca.pem }}\n"
        ),
    );
    spec.files = listener_files(&server, &pki);
    let _gw = Gateway::start(spec, &key).await;
    let url = format!("https://localhost:{port}/v1/catalog");
    let call = |cert| {
        let http = client(&server, port, cert);
        let url = url.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match http.get(&url).bearer_auth(admin::KEY).send().await {
                    Ok(r) => return Some(r.status().as_u16()),
                    // No certificate: the handshake itself fails.
                    Err(_) if cert.is_none() => return None,
                    Err(e) => {
                        assert!(Instant::now() < deadline, "admin TLS listener: {e:?}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
    };
    let ops = pki.client("operator", &[]);
    assert_eq!(
        call(Some(&ops)).await,
        Some(200),
        "the admin CA's certificate and a key"
    );
    let stranger = self_signed("operator", &[]);
    assert_eq!(
        call(Some(&stranger)).await,
        Some(401),
        "a certificate from elsewhere"
    );
    assert_eq!(call(None).await, None, "no certificate: no handshake");
}

#[tokio::test]
async fn the_audit_log_is_opened_again_when_it_is_moved_away() {
    let up = start_upstream().await;
    let key = TestKey::generate();
    let port = free_port();
    let mut spec = GatewaySpec::new(catalog(&up));
    spec.extra = admin::section(port);
    let gw = Gateway::start(spec, &key).await;
    let admin = Admin::new(port);
    assert_eq!(admin.get("/v1/catalog").await.status, 200);
    let log = gw.state_dir().join("admin-audit.log");
    let rotated = gw.state_dir().join("admin-audit.log.1");
    // What logrotate does by default (`create`): the file is renamed, a new one expected.
    std::fs::rename(&log, &rotated).unwrap();
    assert_eq!(admin.get("/v1/credentials").await.status, 200);
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&log).unwrap();
    assert!(
        old.contains("\"/v1/catalog\"") && !old.contains("/v1/credentials"),
        "{old}"
    );
    assert!(new.contains("\"/v1/credentials\""), "{new}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
