//! The external identity provider `corp` of the tests of the ways in (tests/ways_in.rs,
//! tests/token_exchange.rs, tests/tenants.rs): its issuer entry in a catalog, its tokens, and
//! calls with a header or a bearer token. Needs idp/support.rs included as `support`.

use crate::common::*;
use crate::support::Key;
use serde_json::{Value, json};

pub const CORP: &str = "https://idp.corp.test/realms/main";

pub async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut r = reqwest::Client::new().get(gw.url(path));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

pub fn issuer_yaml(name: &str, iss: &str, jwks: &str, extra: &str) -> String {
    format!(
        r#"
  - name: {name}
    issuer: "{iss}"
    jwks_uri: "{jwks}"
    audiences: [tollgate-client]
    algorithms: [ES256, RS256]
    scope_claim: realm_access.roles
    keys: {{ kid_miss_cooldown: 2s, min_lifetime: 1m, fetch_timeout: 2s }}
{extra}"#
    )
}

pub fn corp_token(key: &Key, extra: Value) -> String {
    let mut claims = json!({"aud": "tollgate-client", "realm_access": {"roles": ["orders:read"]}});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    key.token(CORP, claims)
}

pub async fn bearer(gw: &Gateway, path: &str, token: &str) -> u16 {
    get(gw, path, &[("authorization", &format!("Bearer {token}"))])
        .await
        .status()
        .as_u16()
}
