//! Fixtures the benches share: a generated key set, a registered client, and a way to run
//! a future that never waits.

use std::sync::Arc;
use std::time::Duration;
use tollgate::catalog::registry::Client;
use tollgate::config::{SigningKeySource, TokenPolicy, TokenSettings};
use tollgate::domain::jose::Algorithm;
use tollgate::domain::oauth::{Family, GrantType};
use tollgate::domain::secret::Secret;
use tollgate::keys::{KeyRing, KeySet};

pub const ISSUER: &str = "https://gateway.example";

/// Drive a future that never waits (a JWT check touches no I/O) to completion.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// A key set with one freshly generated signing key of `alg`.
pub fn generated_keys(alg: Algorithm) -> Arc<KeyRing> {
    let settings = TokenSettings {
        signing_key: SigningKeySource::Generated {
            algorithm: alg,
            kid: None,
        },
        verification_keys: vec![],
        leeway: Duration::from_secs(60),
        access_token_lifetime: Duration::from_secs(900),
        refresh_grace_period: Duration::from_secs(10),
        rotation: tollgate::config::RotationSettings {
            every: None,
            publish_ahead: Duration::from_secs(600),
        },
        jwks_max_age: Duration::from_secs(300),
        session_lifetime: Duration::from_secs(3600),
    };
    let der = tollgate::keys::generate_pkcs8(alg).expect("key");
    Arc::new(KeyRing::from(
        KeySet::load(&settings, Some(&der)).expect("keys"),
    ))
}

/// A credential of two APIs with three scopes, as the registry builds it.
#[allow(dead_code)] // the validation bench signs its own claims and needs no client
pub fn client(jwt: bool, opaque: bool, lifetime: Duration) -> Client {
    Client {
        id: "reporting-service".into(),
        family: Family::Credential,
        secret_hash: Secret::new(String::new()),
        public: false,
        grant_types: vec![GrantType::ClientCredentials],
        scopes: vec![
            "orders:read".into(),
            "orders:write".into(),
            "billing:read".into(),
        ],
        apis: ["orders".into(), "billing".into()].into_iter().collect(),
        audiences: vec!["orders".into(), "billing".into()],
        pool: None,
        token: TokenPolicy {
            access_token_lifetime: None,
            immortal: false,
            refresh: None,
            allow_url_parameters: false,
            jwt,
            opaque,
            dpop_bound: false,
            certificate_bound: false,
        },
        lifetime,
        scope_set: tollgate::domain::scope::Scopes::from_space_separated(
            "orders:read orders:write billing:read",
        ),
        secrets: Vec::new(),
        exchange_issuers: Vec::new(),
        tenant: None,
        browser: Default::default(),
        certificate_auth: None,
    }
}
