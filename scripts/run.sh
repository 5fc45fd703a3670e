#!/usr/bin/env bash
# Build tollgate (release) and run it on the shipped default config.
# Needs no database or other service; state (the generated signing key) goes to ./state.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --release --locked
exec ./target/release/tollgate -c conf/tollgate.yaml "$@"
