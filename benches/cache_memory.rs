//! Memory per cached validated token: N distinct JWTs are minted as the token endpoint
//! mints them and presented to `Authenticator::authenticate`, whose cache miss validates
//! each and caches its principal, exactly as on the proxy path. Prints the heap bytes the
//! cache holds per token (a counting global allocator: requested sizes, no malloc
//! overhead) and the growth of the process's resident set per token (VmRSS, which does
//! include it).
//!
//! Run: `cargo bench --bench cache_memory` (N = 1,000,000; without `--bench`, as under
//! `cargo test --all-targets`, N = 10,000).

// Bench harness code, not a request path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{ISSUER, block_on, client, generated_keys};
use std::alloc::{GlobalAlloc, Layout};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tollgate::auth::cache::TokenCache;
use tollgate::auth::revocations::Revocations;
use tollgate::auth::{Authenticator, CheckContext, Validator};
use tollgate::config::{CacheSettings, StoreSync};
use tollgate::domain::clock::unix_now;
use tollgate::domain::jose::Algorithm;
use tollgate::domain::oauth::Format;
use tollgate::store::sqlite::SqliteStore;
use tollgate::token::issue::{Issue, Signer};

/// The gateway's allocator (mimalloc, as in `src/main.rs`), keeping count of the bytes
/// currently allocated.
struct Counting;

static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `ALLOC` with the caller's arguments unchanged; the
// counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { ALLOC.alloc(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        let p = unsafe { ALLOC.alloc_zeroed(layout) };
        if !p.is_null() {
            ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { ALLOC.dealloc(ptr, layout) };
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        let p = unsafe { ALLOC.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
            ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated() -> usize {
    ALLOCATED.load(Ordering::Relaxed)
}

/// Resident set size of this process, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

fn main() {
    let n: usize = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };
    let alg = Algorithm::ES256;
    let keys = generated_keys(alg);
    let signer = Signer::new(keys.clone(), ISSUER.into());
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("bench.db"), StoreSync::Normal).expect("store"),
    );
    let auth = Authenticator::new(
        Validator::new(keys, ISSUER, Duration::from_secs(60)),
        // A quarter of headroom above N: nothing is evicted, and moka's frequency sketch
        // (enabled once the cache is half full, sized by max_entries) is counted.
        TokenCache::new(CacheSettings {
            max_entries: u64::try_from(n + n / 4).expect("n"),
            ttl: Duration::from_secs(3600),
        }),
        store,
        Arc::new(Revocations::default()),
    );
    // Longer than the default 15 minutes so no entry expires during a slow run.
    let client = client(true, false, Duration::from_secs(3600));
    // Two of every three tokens carry one audience, the rest two, all three scopes.
    let one_audience = &client.audiences[..1];

    let started = Instant::now();
    let heap_before = allocated();
    let rss_before = rss();
    for i in 0..n {
        let now = unix_now();
        let grant_id = format!("grant-{i:016}");
        let minted = signer
            .mint(Issue {
                client: &client,
                username: None,
                scopes: &client.scopes,
                audiences: if i % 3 == 2 {
                    &client.audiences
                } else {
                    one_audience
                },
                format: Format::Jwt,
                grant_id: &grant_id,
                with_refresh: false,
                now,
                subject: None,
                tenant: None,
                cnf: None,
            })
            .expect("mint");
        block_on(auth.authenticate(&minted.access_token, &CheckContext::own_tokens(now)))
            .result
            .expect("valid token");
    }
    // Let moka apply its pending writes (and grow its bookkeeping) before measuring.
    let mut entries = auth.cache().entry_count();
    loop {
        let again = auth.cache().entry_count();
        if again == entries {
            break;
        }
        entries = again;
    }
    let heap_after = allocated();
    let rss_after = rss();

    let per = |before: usize, after: usize| after.saturating_sub(before) as f64 / n as f64;
    println!(
        "cache_memory: {n} tokens validated and cached, {entries} cache entries, in {:.1?}",
        started.elapsed()
    );
    println!(
        "cache_memory: heap bytes per cached token: {:.1} ({} bytes in all)",
        per(heap_before, heap_after),
        heap_after.saturating_sub(heap_before)
    );
    println!(
        "cache_memory: RSS bytes per cached token: {:.1} ({} KiB in all)",
        per(rss_before, rss_after),
        rss_after.saturating_sub(rss_before) / 1024
    );

    // DPoP proof ids remembered per node (`dpop.replay: per_node`): n distinct proofs of
    // one key within one window.
    let window = tollgate::dpop::replay::ReplayWindow::new(60, 2 * n);
    let jkt = [7u8; 32];
    let heap_before = allocated();
    for i in 0..n {
        let jti = format!("{i:022}");
        let seen = window.remember(&jkt, &jti, 1_000);
        assert_eq!(seen, tollgate::dpop::replay::Seen::First);
    }
    let heap_after = allocated();
    println!(
        "cache_memory: heap bytes per remembered DPoP proof id: {:.1} ({} ids)",
        per(heap_before, heap_after),
        window.len()
    );
}
