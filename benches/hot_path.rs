//! Per-request hot paths besides JWT validation (see `validation.rs`): route matching with
//! 10 and 10,000 APIs configured, minting an access token (ES256, RS256, EdDSA) the way the
//! token endpoint does, and validating an opaque access token from the cache or, on a miss,
//! from its record in the SQLite store.
//!
//! Run: `cargo bench --bench hot_path`

// Bench harness code, not a request path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ISSUER, block_on, client, generated_keys};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tollgate::auth::cache::TokenCache;
use tollgate::auth::revocations::Revocations;
use tollgate::auth::{Authenticator, CheckContext, Validator};
use tollgate::catalog::registry::Client;
use tollgate::config::{
    ApiConfig, AuthMode, CacheSettings, HostHeader, StoreSync, UpstreamConfig, UpstreamServer,
};
use tollgate::domain::clock::unix_now;
use tollgate::domain::jose::Algorithm;
use tollgate::domain::oauth::Format;
use tollgate::routes::RouteTable;
use tollgate::store::Store;
use tollgate::store::sqlite::SqliteStore;
use tollgate::token::issue::{Issue, Signer};

/// An API with its own prefix and one local upstream server, no health check: building
/// its pool touches no network.
fn api_config(i: usize) -> ApiConfig {
    let port = 10_000 + u16::try_from(i % 50_000).expect("port");
    let addr = format!("127.0.0.1:{port}");
    ApiConfig {
        name: format!("svc-{i}"),
        prefix: format!("/svc-{i}"),
        host: None,
        strip_prefix: true,
        upstream: UpstreamConfig {
            servers: vec![UpstreamServer {
                addr: addr.parse().expect("address"),
                authority: addr,
            }],
            tls: None,
            host_header: HostHeader::Pass,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            health_check: None,
            retries: 0,
            protocol: Default::default(),
        },
        auth: AuthMode::JWT,
        issuers: vec![tollgate::config::IssuerRef::Tollgate],
        api_key_header: http::HeaderName::from_static("x-api-key"),
        dpop_required: false,
        audience: format!("svc-{i}"),
        rules: vec![],
        rule_auth: vec![],
        rule_limits: vec![],
        rate_limit: None,
        scopes: vec![],
        identity: tollgate::config::IdentitySettings::default().defaults,
    }
}

fn route_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    for n in [10, 10_000] {
        let apis: Vec<ApiConfig> = (0..n).map(api_config).collect();
        let (table, _) = RouteTable::build(
            &apis,
            &[],
            &tollgate::auth::identity::ClaimPlan::none(),
            &Default::default(),
            false,
        )
        .expect("route table");
        let hit = format!("/svc-{}/orders/42", n / 2);
        let expected = format!("svc-{}", n / 2);
        assert_eq!(
            table.lookup(None, &hit).map(|a| &*a.name),
            Some(expected.as_str())
        );
        let miss = "/unknown/orders/42";
        assert!(table.lookup(None, miss).is_none());

        group.bench_with_input(BenchmarkId::new("hit", n), &hit, |b, path| {
            b.iter(|| table.lookup(None, black_box(path)).is_some())
        });
        group.bench_with_input(BenchmarkId::new("miss", n), &miss, |b, path| {
            b.iter(|| table.lookup(None, black_box(path)).is_some())
        });
    }
    group.finish();
}

fn issue<'a>(client: &'a Client, format: Format, now: i64) -> Issue<'a> {
    Issue {
        client,
        username: None,
        scopes: &client.scopes,
        audiences: &client.audiences,
        format,
        grant_id: "Zq3kV9nQ0a8cVt1mXw2yEg",
        with_refresh: false,
        now,
        subject: None,
        tenant: None,
        cnf: None,
    }
}

fn jwt_signing(c: &mut Criterion) {
    let client = client(true, false, Duration::from_secs(900));
    let mut group = c.benchmark_group("jwt_signing");
    for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
        let signer = Signer::new(generated_keys(alg), ISSUER.into());
        let now = unix_now();
        group.bench_function(alg.as_str(), |b| {
            b.iter(|| {
                signer
                    .mint(issue(&client, Format::Jwt, black_box(now)))
                    .map(|m| m.access_token)
            })
        });
    }
    group.finish();
}

/// An authenticator over a fresh store holding one opaque access token, minted and stored
/// the way the token endpoint does it; returns the token.
fn opaque_setup(dir: &Path) -> (Authenticator, String) {
    let keys = generated_keys(Algorithm::ES256);
    let store =
        Arc::new(SqliteStore::open(&dir.join("bench.db"), StoreSync::Normal).expect("store"));
    let client = client(false, true, Duration::from_secs(900));
    let minted = Signer::new(keys.clone(), ISSUER.into())
        .mint(issue(&client, Format::Opaque, unix_now()))
        .expect("mint");
    // The insert waits for the writer thread's commit: that needs a real runtime.
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(store.insert(minted.records))
        .expect("insert");
    let auth = Authenticator::new(
        Validator::new(keys, ISSUER, Duration::from_secs(60)),
        TokenCache::new(CacheSettings {
            max_entries: 100_000,
            ttl: Duration::from_secs(300),
        }),
        store,
        Arc::new(Revocations::default()),
    );
    (auth, minted.access_token)
}

fn opaque_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (auth, token) = opaque_setup(dir.path());
    let now = unix_now();
    let principal = block_on(auth.authenticate(&token, &CheckContext::own_tokens(now)))
        .result
        .expect("valid");
    assert_eq!(principal.client_id.as_deref(), Some("reporting-service"));
    let key = auth.cache().key(&token);

    let mut group = c.benchmark_group("opaque_lookup");
    group.bench_function("cache_hit", |b| {
        b.iter(|| {
            block_on(auth.authenticate(black_box(&token), &CheckContext::own_tokens(now))).result
        })
    });
    group.bench_function("cache_miss", |b| {
        b.iter(|| {
            auth.cache().invalidate(&key);
            block_on(auth.authenticate(black_box(&token), &CheckContext::own_tokens(now))).result
        })
    });
    group.finish();
}

criterion_group!(benches, route_match, jwt_signing, opaque_lookup);
criterion_main!(benches);
