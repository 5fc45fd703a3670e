//! What the cluster tests (tests/cluster.rs, tests/cluster_keys.rs) share: the catalog and
//! settings of every node on one Redis, an OAuth client and a password grant, and polling
//! with a deadline.

use crate::common::redis::{Redis, store_key_file};
use crate::common::*;
use oauth2::basic::BasicClient;
use oauth2::{
    ClientId, ClientSecret, ResourceOwnerPassword, ResourceOwnerUsername, TokenResponse, TokenUrl,
};
use std::time::{Duration, Instant};

fn catalog(up: &Upstream, lifetime: &str) -> String {
    format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{addr}"] }}
    auth: jwt
user_pools:
  - name: staff
    users:
      - {{ username: alice, password_hash: "{alice}", roles: [orders:read] }}
credentials:
  - client_id: reporting
    client_secret_hash: "{secret}"
    acl: [orders]
    roles: [orders:read]
    grant_types: [client_credentials, password]
    user_pool: staff
    token: {{ refresh: true, access_token_lifetime: {lifetime} }}
"#,
        addr = up.addr,
        alice = cheap_hash("alice-pw"),
        secret = cheap_hash("reporting-secret"),
    )
}

/// The settings of every node: the Redis store, the shared encryption key, and `tokens`
/// (default: the same signing key file on every node).
pub fn spec(redis: &Redis, up: &Upstream, tokens: Option<String>, lifetime: &str) -> GatewaySpec {
    let mut spec = GatewaySpec::new(catalog(up, lifetime));
    spec.extra = redis.store_section();
    spec.files.push(store_key_file());
    spec.tokens = tokens;
    // Behind one load balancer, every node has the same issuer.
    spec.issuer = Some("https://gateway.cluster.test".into());
    spec
}

pub fn oauth(
    gw: &Gateway,
) -> BasicClient<
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
> {
    BasicClient::new(ClientId::new("reporting".into()))
        .set_client_secret(ClientSecret::new("reporting-secret".into()))
        .set_token_uri(TokenUrl::new(gw.url("/credential/jwt")).unwrap())
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn password_grant(gw: &Gateway) -> (String, String) {
    let t = oauth(gw)
        .exchange_password(
            &ResourceOwnerUsername::new("alice".into()),
            &ResourceOwnerPassword::new("alice-pw".into()),
        )
        .request_async(&http())
        .await
        .unwrap();
    (
        t.access_token().secret().clone(),
        t.refresh_token().unwrap().secret().clone(),
    )
}

/// Poll `check` until it holds (a revocation reaches every node within milliseconds; the
/// deadline only bounds a failure).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
