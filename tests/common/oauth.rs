//! Shared fixtures of the token-service tests: a catalog with every kind of client, and
//! `oauth2` crate clients for it.

use super::*;
use oauth2::basic::BasicClient;
use oauth2::{
    ClientId, ClientSecret, EndpointNotSet, EndpointSet, IntrospectionUrl, RevocationUrl,
    StandardRevocableToken, TokenUrl,
};
use serde_json::Value;

pub fn catalog(up: &Upstream) -> String {
    format!(
        r#"
apis:
  - name: orders
    prefix: /orders
    upstream: {{ servers: ["{addr}"] }}
    auth: jwt
    scopes: [orders:read, orders:write]
    rules: [{{ methods: [GET], path: "/orders/**", all_of: [orders:read] }}]
  - name: billing
    prefix: /billing
    upstream: {{ servers: ["{addr}"] }}
    auth: jwt
products:
  - {{ name: platform, apis: [orders, billing] }}
user_pools:
  - name: staff
    users:
      - {{ username: alice, password_hash: "{alice}", roles: [orders:read, billing:read] }}
      - {{ username: bob, password_hash: "{bob}", roles: [orders:read], acl: [orders] }}
policies:
  - name: web
    kind: jwt
    apis: [orders]
    client_id: web-app
    client_secret_hash: "{web}"
    public: true
    grant_types: [password]
    user_pool: staff
    token: {{ refresh: true }}
  - name: legacy
    kind: oauth2
    apis: [orders, billing]
    client_id: legacy-key
    client_secret_hash: "{legacy}"
    scopes: [orders:read]
    token: {{ refresh: true, allow_url_parameters: true }}
credentials:
  - client_id: reporting
    client_secret_hash: "{reporting}"
    products: [platform]
    roles: [orders:read, billing:read]
    grant_types: [client_credentials, password]
    user_pool: staff
    token: {{ refresh: true }}
  - client_id: auditor
    client_secret_hash: "{auditor}"
    acl: [billing]
    roles: [billing:read]
  - client_id: forever
    client_secret_hash: "{forever}"
    acl: [orders]
    roles: [orders:read]
    token: {{ immortal: true }}
"#,
        addr = up.addr,
        alice = cheap_hash("alice-pw"),
        bob = cheap_hash("bob-pw"),
        web = cheap_hash("web-secret"),
        legacy = cheap_hash("legacy-secret"),
        reporting = cheap_hash("reporting-secret"),
        auditor = cheap_hash("auditor-secret"),
        forever = cheap_hash("forever-secret"),
    )
}

pub async fn start(grace: &str) -> (Upstream, Gateway) {
    let up = start_upstream().await;
    let key = TestKey::generate();
    let mut spec = GatewaySpec::new(catalog(&up));
    spec.https_issuer = true;
    spec.tokens = Some(format!(
        "tokens:\n  signing_key: {{ algorithm: ES256, file: signing.pem, kid: test-key }}\n  refresh_grace_period: {grace}\n"
    ));
    let gw = Gateway::start(spec, &key).await;
    (up, gw)
}

type Client = oauth2::Client<
    oauth2::basic::BasicErrorResponse,
    oauth2::basic::BasicTokenResponse,
    oauth2::basic::BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointSet,
    EndpointSet,
>;

/// An oauth2 client whose endpoints come from the discovery document alone.
pub async fn discovered_client(gw: &Gateway, id: &str, secret: &str) -> Client {
    let meta: Value = gw
        .client()
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            gw.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = |k: &str| meta[k].as_str().unwrap().to_string();
    BasicClient::new(ClientId::new(id.into()))
        .set_client_secret(ClientSecret::new(secret.into()))
        .set_token_uri(TokenUrl::new(url("token_endpoint")).unwrap())
        .set_introspection_url(IntrospectionUrl::new(url("introspection_endpoint")).unwrap())
        .set_revocation_url(RevocationUrl::new(url("revocation_endpoint")).unwrap())
}

/// An oauth2 client for the endpoints of one family at `token_path`.
pub fn family_client(
    gw: &Gateway,
    family: &str,
    token_path: &str,
    id: &str,
    secret: &str,
) -> Client {
    BasicClient::new(ClientId::new(id.into()))
        .set_client_secret(ClientSecret::new(secret.into()))
        .set_token_uri(TokenUrl::new(format!("{}{token_path}", gw.base)).unwrap())
        .set_introspection_url(
            IntrospectionUrl::new(format!("{}/{family}/introspect", gw.base)).unwrap(),
        )
        .set_revocation_url(RevocationUrl::new(format!("{}/{family}/revoke", gw.base)).unwrap())
}

pub async fn call(gw: &Gateway, path: &str, token: &str) -> u16 {
    gw.client()
        .get(format!("{}{path}", gw.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

pub fn claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}
