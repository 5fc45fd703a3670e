//! Mutual TLS (RFC 8705) end to end, against the real gateway: clients that authenticate
//! with their certificate (`tls_client_auth` by subject DN and by SAN, and
//! `self_signed_tls_client_auth`), tokens bound to it (`cnf["x5t#S256"]`) that the proxy
//! takes only over a connection with that certificate, `require` listeners, discovery,
//! curl, and the config errors of impossible clients.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::dpop::{DpopKey, ProofFor};
use common::mtls::{self, CertKey, Pki};
use common::oauth::claims;
use common::*;
use serde_json::Value;

fn catalog(up: &Upstream, pinned: &CertKey) -> String {
    format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{up}"] }}
    auth: jwt
credentials:
  - client_id: by-dn
    token_endpoint_auth_method: tls_client_auth
    tls_client_auth_subject_dn: "cn=client-dn, o=example"
    acl: [orders]
    roles: [orders:read]
  - client_id: by-dns
    token_endpoint_auth_method: tls_client_auth
    tls_client_auth_san_dns: client-dns.example.com
    acl: [orders]
    roles: [orders:read]
  - client_id: pinned
    token_endpoint_auth_method: self_signed_tls_client_auth
    tls_client_certificates: [{{ sha256: "{pin}" }}]
    acl: [orders]
    roles: [orders:read]
  - client_id: svc
    client_secret_hash: "{svc}"
    acl: [orders]
    roles: [orders:read]
  - client_id: bound-svc
    client_secret_hash: "{svc}"
    tls_client_certificate_bound_access_tokens: true
    acl: [orders]
    roles: [orders:read]
"#,
        up = up.addr,
        pin = pinned.sha256_hex(),
        svc = cheap_hash("svc-secret"),
    )
}

struct Setup {
    _up: Upstream,
    gw: Gateway,
    port: u16,
    server: CertKey,
    /// `CN=client-dn,O=Example` and `CN=other` with SAN client-dns.example.com, from `pki`.
    dn: CertKey,
    dns: CertKey,
    pinned: CertKey,
}

impl Setup {
    async fn start(mode: &str, extra: &str) -> Setup {
        let up = start_upstream().await;
        let pki = Pki::new("Client CA");
        let server = mtls::self_signed("localhost", &["localhost"]);
        let pinned = mtls::self_signed("pinned", &[]);
        let port = free_port();
        let mut spec = GatewaySpec::new(catalog(&up, &pinned));
        spec.extra_listeners = mtls::listener(port, mode, true);
        spec.files = mtls::listener_files(&server, &pki);
        spec.extra = extra.replace("PORT", &port.to_string());
        let gw = Gateway::start(spec, &TestKey::generate()).await;
        let setup = Setup {
            _up: up,
            gw,
            port,
            dn: pki.client("client-dn", &[]),
            dns: pki.client("other", &["client-dns.example.com"]),
            pinned,
            server,
        };
        mtls::wait_ready(&setup.tls(Some(&setup.dn)), port).await;
        setup
    }

    fn tls(&self, cert: Option<&CertKey>) -> reqwest::Client {
        mtls::client(&self.server, self.port, cert)
    }

    fn https(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// A client_credentials request for `id` over `client` at `url`: status and body.
    async fn token(&self, client: &reqwest::Client, url: &str, id: &str) -> (u16, Value) {
        let r = client
            .post(url)
            .form(&[("grant_type", "client_credentials"), ("client_id", id)])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

/// Call `/orders/1` at `url` with a bearer token: status, `WWW-Authenticate`, body.
async fn call(client: &reqwest::Client, url: &str, token: &str) -> (u16, String, Value) {
    let r = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, challenge, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn certificate_clients_get_bound_tokens_the_proxy_enforces() {
    let s = Setup::start("request", "").await;
    let jwt_url = s.https("/credential/jwt");

    // tls_client_auth by subject DN and by SAN dNSName, self_signed_tls_client_auth: each
    // gets a Bearer token bound to the certificate it connected with.
    let mut tokens = Vec::new();
    for (id, cert) in [("by-dn", &s.dn), ("by-dns", &s.dns), ("pinned", &s.pinned)] {
        let (status, body) = s.token(&s.tls(Some(cert)), &jwt_url, id).await;
        assert_eq!(status, 200, "{id}: {body}\n{}", s.gw.log());
        assert_eq!(body["token_type"], "Bearer", "{body}");
        let token = body["access_token"].as_str().unwrap().to_string();
        assert_eq!(claims(&token)["cnf"]["x5t#S256"], cert.x5t(), "{id}");
        tokens.push(token);
    }

    // Wrong or missing certificates are invalid_client (401).
    let pki_twin = mtls::self_signed("client-dn", &[]); // the right DN, not from the CA
    let stranger = mtls::self_signed("pinned", &[]); // not pinned
    for (id, cert) in [
        ("by-dn", Some(&s.dns)),
        ("by-dn", Some(&pki_twin)),
        ("by-dns", Some(&s.dn)),
        ("pinned", Some(&stranger)),
        ("pinned", Some(&s.dn)),
        ("by-dn", None),
        ("nobody", Some(&s.dn)),
    ] {
        let (status, body) = s.token(&s.tls(cert), &jwt_url, id).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
    }
    // Over plain HTTP there is no certificate at all.
    let (status, body) = s
        .token(
            &reqwest::Client::new(),
            &s.gw.url("/credential/jwt"),
            "by-dn",
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // A certificate client sends no secret.
    let r = s
        .tls(Some(&s.dn))
        .post(&jwt_url)
        .basic_auth("by-dn", Some("guess"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The bound token passes over a connection with its certificate only.
    let orders = s.https("/orders/1");
    let (status, _, echo) = call(&s.tls(Some(&s.dn)), &orders, &tokens[0]).await;
    assert_eq!(status, 200, "{echo}\n{}", s.gw.log());
    assert_eq!(echo["path"], "/orders/1", "the upstream saw the request");
    let (status, _, _) = call(&s.tls(Some(&s.pinned)), &orders, &tokens[2]).await;
    assert_eq!(status, 200);
    for (client, url, what) in [
        (reqwest::Client::new(), s.gw.url("/orders/1"), "plain HTTP"),
        (s.tls(None), orders.clone(), "TLS without a certificate"),
        (s.tls(Some(&s.dns)), orders.clone(), "another certificate"),
    ] {
        let (status, challenge, _) = call(&client, &url, &tokens[0]).await;
        assert_eq!(status, 401, "{what}");
        assert!(
            challenge.starts_with("Bearer") && challenge.contains("invalid_token"),
            "{what}: {challenge}"
        );
    }

    // Introspection shows the binding; an opaque token is bound in the store.
    let opaque = {
        let (status, body) = s
            .token(
                &s.tls(Some(&s.pinned)),
                &s.https("/credential/token"),
                "pinned",
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    };
    for (token, cert) in [(&tokens[0], &s.dn), (&opaque, &s.pinned)] {
        let r = reqwest::Client::new()
            .post(s.gw.url("/credential/introspect"))
            .basic_auth("svc", Some("svc-secret"))
            .form(&[("token", token.as_str())])
            .send()
            .await
            .unwrap();
        let intro: Value = r.json().await.unwrap();
        assert_eq!(intro["active"], true, "{intro}");
        assert_eq!(intro["token_type"], "Bearer", "{intro}");
        assert_eq!(intro["cnf"]["x5t#S256"], cert.x5t(), "{intro}");
    }
    let (status, _, _) = call(&s.tls(Some(&s.pinned)), &orders, &opaque).await;
    assert_eq!(status, 200);
    let (status, _, _) = call(&s.tls(Some(&s.dn)), &orders, &opaque).await;
    assert_eq!(status, 401);

    // A secret client over mTLS: bound only when registered so.
    let secret_token = |id: &'static str, cert: Option<&CertKey>| {
        let client = s.tls(cert);
        let url = jwt_url.clone();
        async move {
            let r = client
                .post(url)
                .basic_auth(id, Some("svc-secret"))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = secret_token("svc", Some(&s.dns)).await;
    assert_eq!(status, 200, "{body}");
    assert!(claims(body["access_token"].as_str().unwrap())["cnf"].is_null());
    let (status, body) = secret_token("bound-svc", Some(&s.dns)).await;
    assert_eq!(status, 200, "{body}");
    let bound = claims(body["access_token"].as_str().unwrap());
    assert_eq!(bound["cnf"]["x5t#S256"], s.dns.x5t());
    let (status, body) = secret_token("bound-svc", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // A DPoP proof and a certificate on one request: the proof wins (cnf.jkt, DPoP).
    let key = DpopKey::es256();
    let proof = key.proof(&ProofFor {
        htm: "POST",
        htu: &jwt_url,
        ..Default::default()
    });
    let r = s
        .tls(Some(&s.dn))
        .post(&jwt_url)
        .header("DPoP", proof)
        .form(&[("grant_type", "client_credentials"), ("client_id", "by-dn")])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "DPoP", "{body}");
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["cnf"]["jkt"], key.jkt.as_str());
    assert!(c["cnf"]["x5t#S256"].is_null(), "{c}");

    // Discovery: the methods and bound tokens, no aliases unless configured.
    let d: Value = reqwest::get(s.gw.url("/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["tls_client_certificate_bound_access_tokens"], true, "{d}");
    let methods = d["token_endpoint_auth_methods_supported"].to_string();
    assert!(methods.contains("\"tls_client_auth\""), "{methods}");
    assert!(
        methods.contains("\"self_signed_tls_client_auth\""),
        "{methods}"
    );
    assert!(d.get("mtls_endpoint_aliases").is_none(), "{d}");
}

#[tokio::test]
async fn require_refuses_handshakes_without_a_certificate() {
    let s = Setup::start(
        "require",
        "discovery: { mtls_endpoint_base: \"https://localhost:PORT\" }\n",
    )
    .await;
    let jwks = s.https("/.well-known/jwks.json");
    assert!(s.tls(None).get(&jwks).send().await.is_err());
    assert_eq!(
        s.tls(Some(&s.pinned))
            .get(&jwks)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // curl with --cert/--key.
    let dir = tempfile::tempdir().unwrap();
    let server = write_file(dir.path(), "server.pem", &s.server.cert_pem);
    let cert = write_file(dir.path(), "client.pem", &s.dns.cert_pem);
    let key = write_file(dir.path(), "client-key.pem", &s.dns.key_pem);
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&server)
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", s.port))
        .args([
            "-d",
            "grant_type=client_credentials",
            "-d",
            "client_id=by-dns",
        ])
        .arg(s.https("/credential/jwt"))
        .output()
        .unwrap();
    let body: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(claims(token)["cnf"]["x5t#S256"], s.dns.x5t());

    // RFC 8705 §5: the issuer is the plain listener; the mTLS one is aliased.
    let d: Value = reqwest::get(s.gw.url("/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let aliases = &d["mtls_endpoint_aliases"];
    assert_eq!(aliases["token_endpoint"], s.https("/credential/jwt"), "{d}");
    assert_eq!(
        aliases["introspection_endpoint"],
        s.https("/credential/introspect")
    );
    assert_eq!(
        aliases["revocation_endpoint"],
        s.https("/credential/revoke")
    );
    assert_eq!(d["token_endpoint"], s.gw.url("/credential/jwt"));
}

fn run_check(dir: &std::path::Path, gateway: &str, upstreams: &str) -> String {
    write_file(dir, "tollgate.yaml", gateway);
    write_file(dir, "upstreams.yaml", upstreams);
    let out = std::process::Command::new(binary())
        .arg("-t")
        .arg("-c")
        .arg(dir.join("tollgate.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// tollgate.yaml with these listeners (after the plain one) and extra sections.
fn gateway(listeners: &str, extra: &str) -> String {
    format!(
        "listen:\n  - {{ addr: 127.0.0.1:18080 }}\n{listeners}issuer: http://127.0.0.1:18080\n\
         upstreams_file: upstreams.yaml\nstate_dir: state\nmetrics: {{ listen: 127.0.0.1:19090 }}\n{extra}"
    )
}

/// The upstreams file with one API and these credentials (`c0`, `c1`, ...).
fn upstreams(credentials: &[String]) -> String {
    let mut out = "apis:\n  - { name: orders, prefix: /orders, upstream: { servers: [\"127.0.0.1:1\"] }, auth: jwt }\ncredentials:\n".to_string();
    for (i, extra) in credentials.iter().enumerate() {
        out.push_str(&format!(
            "  - {{ client_id: c{i}, acl: [orders], {extra} }}\n"
        ));
    }
    out
}

#[test]
fn impossible_certificate_clients_are_named_by_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("Client CA");
    let server = mtls::self_signed("localhost", &["localhost"]);
    for (name, contents) in mtls::listener_files(&server, &pki) {
        write_file(dir.path(), &name, &contents);
    }
    let secret = format!("client_secret_hash: \"{}\"", cheap_hash("s"));
    let tls = "tls_client_auth";
    let clients: Vec<String> = [
        format!("token_endpoint_auth_method: {tls}, tls_client_auth_san_dns: a.example, {secret}"),
        format!("token_endpoint_auth_method: {tls}"),
        format!("token_endpoint_auth_method: {tls}, tls_client_auth_san_dns: a.example, tls_client_auth_san_uri: \"https://a.example\""),
        "token_endpoint_auth_method: self_signed_tls_client_auth".to_string(),
        format!("{secret}, tls_client_auth_san_dns: a.example"),
        format!("token_endpoint_auth_method: {tls}, tls_client_auth_subject_dn: \"XX=1\""),
        "token_endpoint_auth_method: self_signed_tls_client_auth, tls_client_certificates: [{ sha256: abc }]".to_string(),
        format!("token_endpoint_auth_method: {tls}, tls_client_auth_san_ip: not-an-ip"),
        format!("{secret}, dpop_bound_access_tokens: true, tls_client_certificate_bound_access_tokens: true"),
    ]
    .into();
    let listeners = "  - { addr: 127.0.0.1:18443, tls: { cert: server.pem, key: server-key.pem, client_ca: client-ca.pem } }\n";
    let err = run_check(
        dir.path(),
        &gateway(
            listeners,
            "discovery: { mtls_endpoint_base: \"http://x\" }\n",
        ),
        &upstreams(&clients),
    );
    for path in [
        "listen[1].tls.client_ca: needs `client_certificates",
        "discovery.mtls_endpoint_base",
        "credentials[0].client_secret_hash: a client that authenticates with its TLS certificate has no secret",
        "credentials[1].token_endpoint_auth_method: tls_client_auth needs the certificate's subject",
        "credentials[2].tls_client_auth_san_uri: tls_client_auth takes exactly one subject",
        "credentials[3].tls_client_certificates",
        "credentials[4].tls_client_auth_san_dns: needs `token_endpoint_auth_method: tls_client_auth`",
        "credentials[5].tls_client_auth_subject_dn",
        "credentials[6].tls_client_certificates[0].sha256",
        "credentials[7].tls_client_auth_san_ip",
        "credentials[8].tls_client_certificate_bound_access_tokens",
    ] {
        assert!(err.contains(path), "no error at {path}:\n{err}");
    }

    // Valid clients, but no listener asks for certificates (or none has a CA).
    let clients: Vec<String> = [
        "token_endpoint_auth_method: self_signed_tls_client_auth, tls_client_certificates: [{ pem: server.pem }]".to_string(),
        format!("token_endpoint_auth_method: {tls}, tls_client_auth_san_dns: a.example"),
        format!("{secret}, tls_client_certificate_bound_access_tokens: true"),
    ]
    .into();
    let err = run_check(dir.path(), &gateway("", ""), &upstreams(&clients));
    for path in [
        "credentials[0].token_endpoint_auth_method: self_signed_tls_client_auth needs a TLS listener",
        "credentials[1].token_endpoint_auth_method: tls_client_auth needs a TLS listener",
        "credentials[2].tls_client_certificate_bound_access_tokens",
    ] {
        assert!(err.contains(path), "no error at {path}:\n{err}");
    }
    let listeners = "  - { addr: 127.0.0.1:18443, tls: { cert: server.pem, key: server-key.pem, client_certificates: request } }\n";
    let err = run_check(dir.path(), &gateway(listeners, ""), &upstreams(&clients));
    assert!(
        err.contains("credentials[1].token_endpoint_auth_method: tls_client_auth needs a TLS listener with a `client_ca`"),
        "{err}"
    );
    assert!(!err.contains("credentials[0]"), "{err}");
    assert!(!err.contains("credentials[2]"), "{err}");
}
