#!/usr/bin/env python3
"""A flood of wrong client secrets against the proxy's main job: the protected route's
throughput alone and during the flood, and a legitimate client's token issuance (its p99)
alone and during it, in interleaved rounds. The flood comes from 1,000 configured client
ids over 200 loopback source addresses (127.0.0.2-201) at a steady rate that stays under
the per-account and per-address brute-force limits, so every attempt costs an argon2 run
unless the hashing queue sheds it (503): what is measured is whether hashing can starve
proxying (limits.hash_concurrency keeps a core for it).

Run through `scripts/bench.sh --flood [--rounds N --duration S --rate R]`.

Layout (2 cores): tollgate on core 0; wrk, the nginx upstream and the flood on core 1.
"""

import argparse
import base64
import collections
import http.client
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.WORK = os.path.join(h.WORK, "flood")
IDS = 1000
ADDRESSES = 200


def upstreams(up, secret_hash):
    lines = [
        "apis:",
        f'  - {{ name: api, prefix: /api, upstream: {{ servers: ["127.0.0.1:{up}"] }}, auth: jwt, '
        'rules: [{ methods: [GET], path: "/api/**", all_of: [bench:read] }] }',
        "credentials:",
        f'  - {{ client_id: bench, client_secret_hash: "{secret_hash}", acl: [api], roles: [bench:read] }}',
    ]
    lines += [f'  - {{ client_id: flood-{i}, client_secret_hash: "{secret_hash}", acl: [api] }}'
              for i in range(IDS)]
    return "\n".join(lines) + "\n"


class Flood:
    """Wrong secrets at `rate` per second from threads, each attempt a new connection from
    one of the loopback addresses; outcomes counted by status."""

    def __init__(self, port, rate, threads=16):
        self.port, self.rate, self.threads = port, rate, threads
        self.stop = threading.Event()
        self.counts = collections.Counter()
        self.lock = threading.Lock()
        self.workers = []

    def start(self):
        self.stop.clear()
        self.workers = [threading.Thread(target=self.run, args=(t,), daemon=True)
                        for t in range(self.threads)]
        for w in self.workers:
            w.start()

    def finish(self):
        self.stop.set()
        for w in self.workers:
            w.join()
        with self.lock:
            out, self.counts = dict(self.counts), collections.Counter()
        return out

    def run(self, t):
        interval = self.threads / self.rate
        n = t
        next_at = time.monotonic()
        while not self.stop.is_set():
            i = n % IDS
            source = f"127.0.0.{2 + n % ADDRESSES}"
            auth = base64.b64encode(f"flood-{i}:wrong-{n}".encode()).decode()
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                               source_address=(source, 0))
                c.request("POST", "/credential/jwt", "grant_type=client_credentials",
                          {"Authorization": f"Basic {auth}",
                           "Content-Type": "application/x-www-form-urlencoded"})
                status = c.getresponse().status
                c.close()
            except OSError:
                status = 0
            with self.lock:
                self.counts[status] += 1
            n += self.threads
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--rate", type=float, default=150.0,
                    help="wrong-secret attempts per second (default 150: under both limits)")
    args = ap.parse_args()
    os.sched_setaffinity(0, {int(h.LOAD_CPU)})
    os.makedirs(h.WORK, exist_ok=True)
    procs = []
    try:
        run(args, procs)
    finally:
        for p in reversed(procs):
            p.stop()


def run(args, procs):
    ports = {k: h.free_port() for k in ("up", "tg", "tgm")}
    h.write("upstream.conf", h.nginx_upstream_conf(ports["up"]))
    h.start_nginx_upstream(procs)
    h.wait_http(ports["up"])
    h.es256_key()
    secret_hash = h.bench_secret_hash()
    upstreams_file = h.write("upstreams.yaml", upstreams(ports["up"], secret_hash))
    conf = h.write("tollgate.yaml", h.tollgate_conf("tollgate", ports["tg"], ports["tgm"],
                                                    upstreams_file))
    procs.append(h.Proc("tollgate", [h.TOLLGATE, "-c", conf], h.PROXY_CPU))
    h.wait_http(ports["tg"], "/.well-known/jwks.json")
    jwt = h.post_form(ports["tg"], "/credential/jwt", "grant_type=client_credentials",
                      f"bench:{h.SECRET}")["access_token"]
    basic = base64.b64encode(f"bench:{h.SECRET}".encode()).decode()
    flood = Flood(ports["tg"], args.rate)

    def protected(d):
        return h.wrk(f"http://127.0.0.1:{ports['tg']}/api/x", args.connections, d,
                     headers=[f"Authorization: Bearer {jwt}"])

    def issuance(d):
        return h.wrk(f"http://127.0.0.1:{ports['tg']}/credential/jwt", 8, d,
                     script="token_request.lua",
                     env={"BASIC": basic, "FORM": "grant_type=client_credentials"})

    scenarios = [("protected route", protected), ("legitimate issuance", issuance)]
    for _, fn in scenarios:
        fn(1)
    results = collections.defaultdict(list)
    for r in range(args.rounds):
        for name, fn in scenarios:
            for flooded in (False, True):
                if flooded:
                    flood.start()
                    time.sleep(1)
                res = fn(args.duration)
                statuses = flood.finish() if flooded else {}
                key = f"{name}{', flood' if flooded else ''}"
                results[key].append(res)
                print(f"round {r + 1} {key:30s} {res['rps']:>9.0f} req/s  p99 "
                      f"{res['p99_ms'] or float('nan'):>8.2f} ms  non-2xx {res['non_2xx']}"
                      f"{'  flood ' + str(statuses) if flooded else ''}", flush=True)

    def ratio(a, b):
        return statistics.median(x["rps"] / y["rps"] for x, y in zip(results[a], results[b])
                                 if y["rps"])

    print("\nprotected route during the flood / alone: "
          f"{ratio('protected route, flood', 'protected route'):.3f}")
    for key in ("legitimate issuance", "legitimate issuance, flood"):
        print(f"{key} p99: median "
              f"{statistics.median(x['p99_ms'] or 0 for x in results[key]):.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
