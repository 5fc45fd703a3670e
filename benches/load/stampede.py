#!/usr/bin/env python3
"""The client-secret cache expiring under a busy client: 64 keep-alive connections issue
client_credentials JWTs for one client while `client_auth_cache.ttl` is 10 s, so a run of
32 s crosses three expiries. Each expiry used to send every in-flight request to argon2 at
once (one verification each, one core at a time); with single-flight checks and refresh
ahead of expiry, one verification serves them. Reports throughput, p99, max latency and
argon2 runs (tollgate_secret_verifications_total, when the binary exports it) per binary,
in interleaved rounds (A B A B ...).

    scripts/bench.sh --stampede [--old path/to/previous/tollgate] [--rounds N]

Layout (2 cores): tollgate on core 0, wrk on core 1.
"""

import argparse
import base64
import os
import re
import statistics
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.WORK = os.path.join(h.WORK, "stampede")


def upstreams(secret_hash):
    return f"""apis:
  - {{ name: api, prefix: /api, upstream: {{ servers: ["127.0.0.1:9"] }}, auth: jwt }}
credentials:
  - {{ client_id: busy, client_secret_hash: "{secret_hash}", acl: [api] }}
"""


def verifications(metrics_port):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                      timeout=5).read().decode()
    except OSError:
        return None
    m = re.search(r"^tollgate_secret_verifications_total (\d+)", text, re.M)
    return int(m.group(1)) if m else None


def max_latency_ms(raw):
    m = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", raw)
    return float(m.group(1)) * h.UNITS[m.group(2)] if m else None


def one_run(name, binary, upstreams_file, args):
    port, metrics = h.free_port(), h.free_port()
    conf = h.tollgate_conf(name, port, metrics, upstreams_file) + (
        "client_auth_cache: { max_entries: 1000, ttl: 10s }\n")
    conf_path = h.write(f"{name}.yaml", conf)
    proc = h.Proc(name, [binary, "-c", conf_path], h.PROXY_CPU)
    try:
        h.wait_http(port, "/.well-known/jwks.json")
        before = verifications(metrics)
        basic = base64.b64encode(f"busy:{h.SECRET}".encode()).decode()
        res = h.wrk(f"http://127.0.0.1:{port}/credential/jwt", args.connections,
                    args.duration, script="token_request.lua",
                    env={"BASIC": basic, "FORM": "grant_type=client_credentials"})
        after = verifications(metrics)
        res["max_ms"] = max_latency_ms(res["raw"])
        res["argon2"] = after - before if before is not None and after is not None else None
        return res
    finally:
        proc.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", help="a previous tollgate binary to compare with")
    ap.add_argument("--new", default=h.TOLLGATE)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=int, default=32)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    os.makedirs(h.WORK, exist_ok=True)
    h.es256_key()
    secret_hash = h.bench_secret_hash(args.new)
    upstreams_file = h.write("upstreams.yaml", upstreams(secret_hash))
    binaries = [("new", args.new)] + ([("old", args.old)] if args.old else [])
    results = {name: [] for name, _ in binaries}
    for r in range(args.rounds):
        for name, binary in reversed(binaries):
            res = one_run(f"{name}-{r}", binary, upstreams_file, args)
            results[name].append(res)
            print(f"round {r + 1} {name:4s} {res['rps']:>8.0f} tokens/s  p99 "
                  f"{res['p99_ms'] or float('nan'):>8.2f} ms  max "
                  f"{res['max_ms'] or float('nan'):>8.2f} ms  argon2 runs "
                  f"{res['argon2'] if res['argon2'] is not None else '-'}  non-2xx "
                  f"{res['non_2xx']}  socket errors {res['socket_errors']}", flush=True)
    print("\nmedians:")
    for name, _ in binaries:
        rs = results[name]
        print(f"  {name:4s} {statistics.median(x['rps'] for x in rs):>8.0f} tokens/s  p99 "
              f"{statistics.median(x['p99_ms'] or 0 for x in rs):.2f} ms  max "
              f"{statistics.median(x['max_ms'] or 0 for x in rs):.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
