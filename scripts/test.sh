#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, integration tests (the real gateway,
# real upstreams on 127.0.0.1, openid-client), the benches run once as tests, and a check
# that the fuzz targets (run outside CI by fuzz/run.sh) still build.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --test
npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
CARGO_TARGET_DIR=target/fuzz-check \
    cargo clippy --locked --manifest-path fuzz/Cargo.toml --bins -- -D warnings
