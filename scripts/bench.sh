#!/usr/bin/env bash
# The load harness: tollgate against nginx and HAProxy, in interleaved rounds, plus
# callgrind instructions per request. Installs what it needs, builds the release binary,
# prints one table and writes JSON under target/bench/. Options: benches/load/harness.py -h
#   ./scripts/bench.sh                 # 3 rounds × 8 s per scenario, about 10 minutes
#   ./scripts/bench.sh --rounds 5 --duration 10
#   ./scripts/bench.sh --cluster       # Redis: throughput against SQLite, revocation
#                                      # propagation across 3 nodes, Redis killed mid-load
#   ./scripts/bench.sh --issuers       # protected route: external issuer's JWT vs own JWT
#   ./scripts/bench.sh --dpop          # protected route: DPoP (fresh proof per request) vs
#                                      # cached / fresh bearer JWT, issuance with and without
#                                      # a proof, replay per_node vs cluster (Redis); callgrind
#   ./scripts/bench.sh --provision     # admin API: creations/s, time to effect, 10 vs 100k creds
#   ./scripts/bench.sh --scaling       # 100 issuers vs 1, 1M revocations vs 0, 100k consumers vs 10
#   ./scripts/bench.sh --store-growth  # opaque issuance and durable refresh after 2,000,000
#                                      # stored tokens, old schema (--old BINARY) vs this one
#   ./scripts/bench.sh --identity      # protected route with no / five identity headers /
#                                      # a phantom token; forward auth behind nginx
#   ./scripts/bench.sh --grpc          # gRPC unary calls: direct vs through tollgate (h2c)
#   ./scripts/bench.sh --flood         # the protected route and a client's issuance during a
#                                      # flood of wrong secrets (1,000 ids, 200 addresses)
#   ./scripts/bench.sh --stampede      # a busy client across client-secret cache expiries
#                                      # (--old BINARY to compare with a previous build)
#   ./scripts/bench.sh --soak          # 30 min mixed load (issue, refresh, introspect, revoke,
#                                      # protected route, SIGHUP every minute): RSS, fds, store
#   ./scripts/bench.sh --slow          # a normal client's p99 (protected route, issuance) alone
#                                      # and during 1,000 slowloris + 100 slow uploads
#   ./scripts/bench.sh --latency       # p50/p99/p99.9 at a fixed rate (half nginx's maximum):
#                                      # protected route vs nginx proxy_pass (oha, corrected)
#   ./scripts/bench.sh --tls           # TLS 1.3 vs nginx: full/resumed handshakes, h1.1 and h2 req/s
#   ./scripts/bench.sh --all           # the harness, then --scaling, --tls and --latency: every
#                                      # figure of the performance round, one after the other
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --bench
# The bare Pingora floor is an example of this crate: `cargo build` alone leaves it out.
cargo build --release --locked --bin tollgate --example bare
if [ "${1:-}" = "--cluster" ]; then
  shift
  exec python3 benches/load/cluster.py "$@"
fi
if [ "${1:-}" = "--issuers" ]; then    # an external issuer's tokens against tollgate's own
  shift
  exec python3 benches/load/issuers.py "$@"
fi
if [ "${1:-}" = "--dpop" ]; then       # DPoP against bearer tokens; --rounds 2 --duration 8
  shift
  # The fresh-bearer scenario signs its tokens with the `cryptography` package.
  python3 -c 'import cryptography' 2>/dev/null || python3 -m pip install --quiet cryptography
  exec python3 benches/load/dpop.py "$@"
fi
if [ "${1:-}" = "--provision" ]; then  # --rounds 5 --duration 6 --samples 100 --count 100000
  shift
  exec python3 benches/load/provision.py "$@"
fi
if [ "${1:-}" = "--scaling" ]; then   # --rounds 3 --duration 6 --issuers 100 --revocations
  shift                                # 1000000 --consumers 100000 [--only issuers ...]
  # The external issuers' tokens are signed with the `cryptography` package.
  python3 -c 'import cryptography' 2>/dev/null || python3 -m pip install --quiet cryptography
  exec python3 benches/load/scaling.py "$@"
fi
if [ "${1:-}" = "--identity" ]; then
  shift
  exec python3 benches/load/identity.py "$@"
fi
if [ "${1:-}" = "--grpc" ]; then
  shift
  npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error
  exec python3 benches/load/grpc.py "$@"
fi
if [ "${1:-}" = "--flood" ]; then
  shift
  exec python3 benches/load/flood.py "$@"
fi
if [ "${1:-}" = "--stampede" ]; then
  shift
  exec python3 benches/load/stampede.py "$@"
fi
if [ "${1:-}" = "--soak" ]; then       # --minutes 30 --sample 10 --reload-every 60 --rate 300
  shift
  exec python3 benches/load/soak.py "$@"
fi
if [ "${1:-}" = "--slow" ]; then       # --rounds 2 --duration 10 --slowloris 1000 --uploads 100
  shift
  exec python3 benches/load/slow.py "$@"
fi
if [ "${1:-}" = "--all" ]; then
  shift
  python3 -c 'import cryptography' 2>/dev/null || python3 -m pip install --quiet cryptography
  command -v oha >/dev/null 2>&1 || cargo install --locked oha
  python3 benches/load/harness.py "$@"
  python3 benches/load/scaling.py
  python3 benches/load/tls.py
  exec python3 benches/load/latency.py
fi
if [ "${1:-}" = "--tls" ]; then       # --rounds 3 --duration 6 [--skip-profile]
  shift
  exec python3 benches/load/tls.py "$@"
fi
if [ "${1:-}" = "--latency" ]; then    # --rounds 3 --duration 10 [--rate N] --connections 50
  shift
  # The fixed-rate client (latency from each request's scheduled time), from crates.io.
  command -v oha >/dev/null 2>&1 || cargo install --locked oha
  exec python3 benches/load/latency.py "$@"
fi
if [ "${1:-}" = "--store-growth" ]; then
  shift
  exec python3 benches/load/store_growth.py "$@"
fi
exec python3 benches/load/harness.py "$@"
