#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, integration tests (the real gateway,
# real upstreams on 127.0.0.1, openid-client), and the benches run once as tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --test
npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
