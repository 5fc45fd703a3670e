//! A DPoP proof at the proxy, alone: the whole check (header from the key cache, ES256
//! signature, claims, `htm`/`htu`/`iat`/`ath`, the replay window) against its floor, one
//! ES256 verification of the same proof, and the header parse a new client key costs once.
//!
//! Run: `cargo bench --bench dpop`

// Bench harness code, not a request path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Only `block_on` is used here.
#[allow(dead_code)]
mod common;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::block_on;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;
use tollgate::config::{DpopSettings, StoreSync};
use tollgate::domain::clock::unix_now;
use tollgate::domain::jose::JwsAlg;
use tollgate::dpop::client::{ClientKey, generate_key};
use tollgate::dpop::{At, Dpop, Expect, proof};
use tollgate::store::sqlite::SqliteStore;

const URL: &str = "http://127.0.0.1:8080/orders/1";
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl";

fn dpop(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("b.db"), StoreSync::Normal).unwrap());
    let metrics = prometheus::IntCounterVec::new(
        prometheus::Opts::new("bench_dpop_proofs_total", "bench"),
        &["at", "result"],
    )
    .unwrap();
    let dpop = Dpop::new(
        DpopSettings::default(),
        Duration::from_secs(60),
        "http://127.0.0.1:8080",
        None,
        store,
        metrics,
    )
    .unwrap();
    let key = ClientKey::from_pem(&generate_key().unwrap()).unwrap();
    // Hashed once per token, when it is validated.
    let ath = proof::token_hash(TOKEN);
    let expect = Expect {
        method: "GET",
        scheme: "http",
        host: Some("127.0.0.1:8080"),
        path: "/orders/1",
        ath: Some(&ath),
        nonce: false,
    };
    let fresh = || {
        key.proof("GET", URL, Some(TOKEN), None, unix_now())
            .unwrap()
    };
    // The key cache is warm, as for every proof of a client after its first.
    block_on(dpop.check(&fresh(), &expect, unix_now(), At::Api)).expect("a valid proof");

    let mut group = c.benchmark_group("dpop");
    group.bench_function("check/ES256", |b| {
        b.iter_batched(
            fresh,
            |p| block_on(dpop.check(black_box(&p), &expect, unix_now(), At::Api)),
            BatchSize::SmallInput,
        )
    });
    let p = fresh();
    let parts = proof::split(&p).unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&B64.decode(parts.header).unwrap()).unwrap();
    let point = [
        vec![4u8],
        B64.decode(header["jwk"]["x"].as_str().unwrap()).unwrap(),
        B64.decode(header["jwk"]["y"].as_str().unwrap()).unwrap(),
    ]
    .concat();
    let verifier = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point).unwrap();
    group.bench_function("es256_verify_alone", |b| {
        b.iter(|| {
            verifier
                .verify_sig(black_box(parts.signing_input), black_box(&parts.signature))
                .is_ok()
        })
    });
    group.bench_function("header_parse/new_key", |b| {
        b.iter(|| proof::parse_header(black_box(parts.header), &[JwsAlg::ES256, JwsAlg::EdDSA]))
    });
    group.finish();
}

criterion_group!(benches, dpop);
criterion_main!(benches);
