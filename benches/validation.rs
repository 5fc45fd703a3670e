//! The bearer-validation hot path: a token already in the moka cache versus one that
//! needs its signature and claims checked (ES256, RS256, EdDSA), plus the per-API
//! audience and scope check that follows either.
//!
//! Run: `cargo bench --bench validation`

// Bench harness code, not a request path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ISSUER, block_on, generated_keys};
use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use tollgate::auth::cache::TokenCache;
use tollgate::auth::revocations::Revocations;
use tollgate::auth::{Authenticator, CheckContext, Validator, authorize};
use tollgate::config::{CacheSettings, StoreSync};
use tollgate::domain::clock::unix_now;
use tollgate::domain::jose::Algorithm;
use tollgate::domain::scope::Rule;
use tollgate::store::sqlite::SqliteStore;

fn setup(alg: Algorithm, dir: &std::path::Path) -> (Authenticator, String) {
    let keys = generated_keys(alg);
    let now = unix_now();
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": "reporting-service", "aud": ["orders", "billing"],
        "exp": now + 3600, "iat": now, "nbf": now, "jti": "b2o5Qk1dR8e1m3Ue0yX3Aw",
        "client_id": "reporting-service", "scope": "orders:read orders:write billing:read",
        "gid": "Zq3kV9nQ0a8cVt1mXw2yEg",
    });
    let token = keys
        .get()
        .signing()
        .sign_compact(claims.to_string().as_bytes())
        .expect("sign");
    std::fs::create_dir_all(dir).expect("dir");
    let store =
        Arc::new(SqliteStore::open(&dir.join("bench.db"), StoreSync::Normal).expect("store"));
    let auth = Authenticator::new(
        Validator::new(keys, ISSUER, Duration::from_secs(60)),
        TokenCache::new(CacheSettings {
            max_entries: 100_000,
            ttl: Duration::from_secs(300),
        }),
        store,
        Arc::new(Revocations::default()),
    );
    (auth, token)
}

fn validation(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("validation");
    for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
        let (auth, token) = setup(alg, &dir.path().join(alg.as_str()));
        let now = unix_now();
        assert!(
            block_on(auth.authenticate(&token, &CheckContext::own_tokens(now)))
                .result
                .is_ok()
        );
        let key = auth.cache().key(&token);

        group.bench_function(format!("cache_hit/{}", alg.as_str()), |b| {
            b.iter(|| {
                block_on(auth.authenticate(black_box(&token), &CheckContext::own_tokens(now)))
                    .result
            })
        });
        group.bench_function(format!("cache_miss/{}", alg.as_str()), |b| {
            b.iter(|| {
                auth.cache().invalidate(&key);
                block_on(auth.authenticate(black_box(&token), &CheckContext::own_tokens(now)))
                    .result
            })
        });
    }
    group.finish();

    let (auth, token) = setup(Algorithm::ES256, &dir.path().join("scope"));
    let now = unix_now();
    let principal = block_on(auth.authenticate(&token, &CheckContext::own_tokens(now)))
        .result
        .expect("valid");
    let rules = vec![
        Rule::new(&["GET".into()], "/orders/**", &["orders:read".into()], &[]).expect("rule"),
        Rule::new(
            &["POST".into()],
            "/orders/**",
            &["orders:write".into()],
            &[],
        )
        .expect("rule"),
    ];
    c.bench_function("authorize/audience_and_scope", |b| {
        b.iter(|| {
            authorize(
                &principal,
                black_box("orders"),
                &rules,
                &Method::POST,
                black_box("/orders/42/items"),
            )
        })
    });
    let cache = auth.cache();
    c.bench_function("cache_key/siphash13_128", |b| {
        b.iter(|| cache.key(black_box(&token)))
    });
}

criterion_group!(benches, validation);
criterion_main!(benches);
