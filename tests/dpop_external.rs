//! An external identity provider's sender-constrained tokens are enforced at the edge too:
//! a token whose `cnf.jkt` names a DPoP key passes only with a proof of that key, one bound
//! to a certificate only over that certificate's connection, and one whose `cnf` binds to
//! nothing the gateway can check is refused rather than taken as a bearer token.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "idp/corp.rs"]
mod corp;
#[path = "idp/support.rs"]
#[allow(dead_code)]
mod support;

use common::dpop::{DpopKey, ProofFor};
use common::*;
use corp::{CORP, bearer, corp_token, get, issuer_yaml};
use serde_json::json;
use support::{JwksServer, Key};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_bound_tokens_need_their_key_or_certificate() {
    let up = start_upstream().await;
    let key = Key::es256("corp-1");
    let jwks = JwksServer::start(&[&key]).await;
    let catalog = format!(
        r#"
issuers:
{issuer}
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{addr}"] }}
    auth: jwt
    issuers: [corp]
    rules: [{{ methods: [GET], path: "/orders/**", all_of: [orders:read] }}]
"#,
        issuer = issuer_yaml("corp", CORP, &jwks.url(), ""),
        addr = up.addr,
    );
    let gw = Gateway::start(GatewaySpec::new(catalog), &TestKey::generate()).await;
    // An unbound token of the provider passes as a bearer token.
    assert_eq!(
        bearer(&gw, "/orders/1", &corp_token(&key, json!({}))).await,
        200
    );

    let dpop = DpopKey::es256();
    let token = corp_token(&key, json!({"cnf": {"jkt": dpop.jkt}}));
    assert_eq!(
        bearer(&gw, "/orders/1", &token).await,
        401,
        "bound, as Bearer"
    );
    let url = gw.url("/orders/1");
    let proof = |k: &DpopKey| {
        k.proof(&ProofFor {
            htm: "GET",
            htu: &url,
            token: Some(&token),
            nonce: None,
        })
    };
    let with = |p: String| {
        let auth = format!("DPoP {token}");
        let gw = &gw;
        async move {
            get(gw, "/orders/1", &[("authorization", &auth), ("dpop", &p)])
                .await
                .status()
                .as_u16()
        }
    };
    assert_eq!(with(proof(&dpop)).await, 200, "with a proof of its key");
    assert_eq!(with(proof(&DpopKey::es256())).await, 401, "another key");

    // Bound to a certificate: refused over a connection without it.
    let cert_bound = corp_token(&key, json!({"cnf": {"x5t#S256": dpop.jkt}}));
    assert_eq!(bearer(&gw, "/orders/1", &cert_bound).await, 401);
    // A `cnf` the gateway cannot check is no bearer token (the claims' strict reading
    // refuses it, for external tokens as for the gateway's own).
    let unusable = corp_token(&key, json!({"cnf": {"jwk": {"kty": "EC"}}}));
    assert_eq!(bearer(&gw, "/orders/1", &unusable).await, 401);
}
