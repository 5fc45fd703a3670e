//! TLS: a listener with a PEM certificate offering HTTP/2 by ALPN, and TLS to an
//! upstream with SNI and certificate verification against a configured CA.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::time::{Duration, Instant};

struct Cert {
    cert_pem: String,
    key_pem: String,
}

fn self_signed(names: &[&str]) -> Cert {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let ck = rcgen::generate_simple_self_signed(names).unwrap();
    Cert {
        cert_pem: ck.cert.pem(),
        key_pem: ck.key_pair.serialize_pem(),
    }
}

/// A gateway with a plain listener (for the harness) and a TLS listener on `tls_port`.
async fn tls_gateway(cert: &Cert, tls_port: u16) -> Gateway {
    let mut spec = GatewaySpec::new("allow_empty: true\n");
    spec.extra_listeners =
        format!("  - addr: 127.0.0.1:{tls_port}\n    tls: {{ cert: cert.pem, key: key.pem }}\n");
    spec.files = vec![
        ("cert.pem".into(), cert.cert_pem.clone()),
        ("key.pem".into(), cert.key_pem.clone()),
    ];
    Gateway::start(spec, &TestKey::generate()).await
}

async fn wait_tls(client: &reqwest::Client, url: &str) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.get(url).send().await {
            Ok(r) => return r,
            Err(e) => {
                assert!(Instant::now() < deadline, "TLS listener not ready: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn tls_listener_serves_http2_and_http1() {
    let cert = self_signed(&["localhost"]);
    let tls_port = free_port();
    let gw = tls_gateway(&cert, tls_port).await;
    let root = reqwest::Certificate::from_pem(cert.cert_pem.as_bytes()).unwrap();
    let url = format!("https://localhost:{tls_port}/.well-known/jwks.json");

    let h2 = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .resolve("localhost", ([127, 0, 0, 1], tls_port).into())
        .build()
        .unwrap();
    let r = wait_tls(&h2, &url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN should pick h2");

    let h1 = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", ([127, 0, 0, 1], tls_port).into())
        .http1_only()
        .build()
        .unwrap();
    let r = h1.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    drop(gw);
}

#[tokio::test]
async fn tls_upstream_is_verified_against_its_ca_and_sni() {
    // The upstream is another tollgate serving TLS for "localhost".
    let cert = self_signed(&["localhost"]);
    let tls_port = free_port();
    let upstream_gw = tls_gateway(&cert, tls_port).await;
    let root = reqwest::Certificate::from_pem(cert.cert_pem.as_bytes()).unwrap();
    let direct = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", ([127, 0, 0, 1], tls_port).into())
        .build()
        .unwrap();
    let upstream_jwks = wait_tls(
        &direct,
        &format!("https://localhost:{tls_port}/.well-known/jwks.json"),
    )
    .await
    .text()
    .await
    .unwrap();

    let catalog = format!(
        r#"
apis:
  - name: secure
    prefix: /secure
    strip_prefix: true
    upstream:
      servers: ["127.0.0.1:{tls_port}"]
      tls: {{ sni: localhost, ca_file: upstream-ca.pem }}
      host_header: {{ set: localhost }}
    auth: none
  - name: wrong-name
    prefix: /wrong-name
    strip_prefix: true
    upstream:
      servers: ["127.0.0.1:{tls_port}"]
      tls: {{ sni: other.example, ca_file: upstream-ca.pem }}
    auth: none
  - name: untrusted
    prefix: /untrusted
    strip_prefix: true
    upstream:
      servers: ["127.0.0.1:{tls_port}"]
      tls: {{ sni: localhost }}
    auth: none
"#
    );
    let mut spec = GatewaySpec::new(catalog);
    spec.files = vec![("upstream-ca.pem".into(), cert.cert_pem.clone())];
    let front = Gateway::start(spec, &TestKey::generate()).await;
    let client = reqwest::Client::new();
    let r = client
        .get(front.url("/secure/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        upstream_jwks,
        "the upstream's own key set came back"
    );
    // A name the certificate does not carry, or a CA we do not trust: refused.
    let r = client.get(front.url("/wrong-name/x")).send().await.unwrap();
    let (status, body) = (r.status(), r.text().await.unwrap());
    assert_eq!(status, 502, "{body}\n{}", front.log());
    let r = client.get(front.url("/untrusted/x")).send().await;
    let status = r.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
    assert_eq!(status, 502, "{r:?}\n{}", front.log());
    drop(upstream_gw);
}
