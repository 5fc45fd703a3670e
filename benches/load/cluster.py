#!/usr/bin/env python3
"""Cluster harness: tollgate on Redis, on this machine.

Run through `scripts/bench.sh --cluster` (it installs redis-server and builds the release
binary). It measures, on a real redis-server (appendonly yes, appendfsync everysec):

  1. stateful throughput, Redis against SQLite (sync: full), in interleaved rounds:
     opaque client_credentials issuance, issuance with a refresh token, durable refresh;
  2. revocation propagation across 3 nodes: a token cached on nodes B and C is revoked on A,
     and B and C are polled (one keep-alive connection each) until they refuse it; the time
     from the revocation's answer to the first refusal, p50 / p99 over many revocations;
  3. Redis commands per request on the protected route, cached JWT and cached opaque
     token (INFO stats before and after, minus what the nodes do when idle);
  4. Redis killed in the middle of a load (and restarted 3 s later): what every second of
     protected-route and issuance traffic answered.

Layout (2 cores): the gateways on core 0, wrk and redis-server on core 1.
Results: a table on stdout, JSON in target/bench/cluster/latest.json.
"""

import argparse
import base64
import datetime
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.WORK = os.path.join(h.WORK, "cluster")
ENC_KEY = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n"


def redis_args(port):
    d = os.path.join(h.WORK, "redis")
    os.makedirs(d, exist_ok=True)
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]


def node_conf(name, port, mport, upstreams, store):
    state = os.path.join(h.WORK, f"{name}-state")
    os.makedirs(state, exist_ok=True)
    return f"""
listen:
  - addr: 127.0.0.1:{port}
metrics:
  listen: 127.0.0.1:{mport}
issuer: {h.ISSUER}
upstreams_file: {upstreams}
state_dir: {state}
server:
  threads: 1
  grace_period: 0s
  graceful_shutdown_timeout: 1s
tokens:
  signing_key: {{ algorithm: ES256 }}
{store}
log:
  level: warn
  access_log: false
"""


def redis_store(port):
    return (f"store:\n  kind: redis\n  url: redis://127.0.0.1:{port}/0\n"
            f"  timeout: 500ms\n  encryption_key_file: {h.WORK}/store-key\n")


SQLITE_STORE = "store:\n  kind: sqlite\n  sync: full\n"


class Poller:
    """One keep-alive connection to a node, asking with a bearer token."""

    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def status(self, token):
        self.c.request("GET", "/api/x", headers={"Authorization": f"Bearer {token}"})
        r = self.c.getresponse()
        r.read()
        return r.status


def propagation(nodes, user, samples):
    """Seconds from a revocation's answer on node A to the first refusal on B and on C."""
    a, others = nodes[0], nodes[1:]
    pollers = [Poller(p) for p in others]
    delays = []
    for _ in range(samples):
        token = h.post_form(a, "/credential/jwt", "grant_type=client_credentials",
                            user)["access_token"]
        for p in pollers:
            if p.status(token) != 200:
                raise SystemExit("a fresh token was refused before its revocation")
        found = [None] * len(pollers)

        def watch(i, t0_box):
            p = pollers[i]
            while p.status(token) == 200:
                pass
            found[i] = time.monotonic() - t0_box[0]

        t0 = [0.0]
        threads = [threading.Thread(target=watch, args=(i, t0)) for i in range(len(pollers))]
        # Revoke, note when the answer came back, then let the watchers run.
        if post(a, "/credential/revoke", f"token={token}", user) != 200:
            raise SystemExit("the revocation failed")
        t0[0] = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        delays += [f for f in found if f is not None]
    return delays


def post(port, path, form, user):
    """POST a form with Basic client authentication; the status."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", path, body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "Basic " + base64.b64encode(user.encode()).decode(),
    })
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def buckets(raw):
    """{second: {status: count}} from status_by_second.lua's output."""
    out = {}
    for line in raw.splitlines():
        if line.startswith("bucket "):
            key, n = line.split()[1:]
            sec, status = key.split(":")
            d = out.setdefault(int(sec), {})
            d[status] = d.get(status, 0) + int(n)
    return dict(sorted(out.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--samples", type=int, default=200, help="revocations to time")
    ap.add_argument("--skip-throughput", action="store_true",
                    help="skip the Redis/SQLite throughput rounds")
    args = ap.parse_args()
    os.makedirs(h.WORK, exist_ok=True)
    for entry in os.listdir(h.WORK):
        if not entry.startswith("results-"):
            subprocess.run(["rm", "-rf", os.path.join(h.WORK, entry)])
    os.makedirs(os.path.join(h.WORK, "nginx-tmp"))
    with open(os.path.join(h.WORK, "store-key"), "w") as f:
        f.write(ENC_KEY)
    procs = []
    try:
        results = run(args, procs)
    finally:
        for p in reversed(procs):
            p.stop()
    report(args, results)


def run(args, procs):
    ports = {k: h.free_port() for k in ("up", "redis", "a", "am", "b", "bm", "c", "cm",
                                         "sq", "sqm")}
    h.write("upstream.conf", h.nginx_upstream_conf(ports["up"]))
    h.start_nginx_upstream(procs)
    h.wait_http(ports["up"])
    redis = h.Proc("redis", redis_args(ports["redis"]), h.LOAD_CPU)
    procs.append(redis)
    h.wait_redis(ports["redis"])

    secret_hash = h.bench_secret_hash()
    upstreams = h.write("upstreams.yaml", h.tollgate_upstreams(ports["up"], secret_hash))
    node_ports = []
    for n in ("a", "b", "c"):
        conf = h.write(f"{n}.yaml", node_conf(n, ports[n], ports[n + "m"], upstreams,
                                               redis_store(ports["redis"])))
        procs.append(h.Proc(f"node-{n}", [h.TOLLGATE, "-c", conf], h.PROXY_CPU))
        h.wait_http(ports[n])
        node_ports.append(ports[n])
    sq_conf = h.write("sqlite.yaml", node_conf("sqlite", ports["sq"], ports["sqm"], upstreams,
                                                SQLITE_STORE))
    procs.append(h.Proc("node-sqlite", [h.TOLLGATE, "-c", sq_conf], h.PROXY_CPU))
    h.wait_http(ports["sq"])

    user = f"bench:{h.SECRET}"
    basic = base64.b64encode(user.encode()).decode()
    basic_refresh = base64.b64encode(f"bench-refresh:{h.SECRET}".encode()).decode()
    c = args.connections
    results = {}

    # 1. Stateful throughput, Redis against SQLite.
    def issue(port, basic_auth, record=None):
        env = {"BASIC": basic_auth, "FORM": "grant_type=client_credentials"}
        if record:
            env["RECORD"] = record
        return lambda d: h.wrk(f"http://127.0.0.1:{port}/credential/token", c, d,
                               script="token_request.lua", env=env)

    def refresh(port, tokens):
        return lambda d: h.wrk(f"http://127.0.0.1:{port}", c, d, script="refresh.lua",
                               env={"BASIC": basic_refresh, "TOKENS": tokens,
                                    "ENDPOINT": "/credential/token"})

    scenarios = []
    for label, port in (("redis", ports["a"]), ("sqlite", ports["sq"])):
        tokens = os.path.join(h.WORK, f"refresh-{label}.txt")

        def with_refresh(d, port=port, tokens=tokens):
            if os.path.exists(tokens):
                os.remove(tokens)
            return issue(port, basic_refresh, record=tokens)(d)

        scenarios += [
            (f"issue cc opaque, {label}", issue(port, basic)),
            (f"issue cc opaque + refresh, {label}", with_refresh),
            (f"refresh, {label}", refresh(port, tokens)),
        ]
    if args.skip_throughput:
        scenarios = []
    for name, fn in scenarios:
        if not name.startswith("refresh"):
            fn(1)
    rounds = {name: [] for name, _ in scenarios}
    for r in range(args.rounds if scenarios else 0):
        for name, fn in scenarios:
            res = fn(args.duration)
            res.pop("raw", None)
            rounds[name].append(res)
            print(f"round {r + 1} {name:34s} {res['rps']:>9.0f} req/s  p99 "
                  f"{res['p99_ms'] or float('nan'):.2f} ms"
                  f"{'  non-2xx ' + str(res['non_2xx']) if res['non_2xx'] else ''}", flush=True)
    results["rounds"] = rounds

    # 2. Revocation propagation across the three nodes.
    delays = propagation(node_ports, user, args.samples)
    results["propagation_ms"] = {
        "samples": len(delays),
        "p50": pct(delays, 0.50) * 1000,
        "p99": pct(delays, 0.99) * 1000,
        "max": max(delays) * 1000,
    }
    print(f"revocation propagation: p50 {results['propagation_ms']['p50']:.2f} ms, "
          f"p99 {results['propagation_ms']['p99']:.2f} ms over {len(delays)} node-samples",
          flush=True)

    # 3. Redis commands per request on the protected route (cache hits).
    jwt = h.post_form(ports["a"], "/credential/jwt", "grant_type=client_credentials",
                      user)["access_token"]
    opaque = h.post_form(ports["a"], "/credential/token", "grant_type=client_credentials",
                         user)["access_token"]
    rt = {}
    for label, token in (("JWT", jwt), ("opaque", opaque)):
        h.wrk(f"http://127.0.0.1:{ports['a']}/api/x", 1, 1,
              headers=[f"Authorization: Bearer {token}"])
        before, t0 = h.redis_commands(ports["redis"]), time.monotonic()
        time.sleep(3)
        idle = (h.redis_commands(ports["redis"]) - before - 1) / (time.monotonic() - t0)
        before, t0 = h.redis_commands(ports["redis"]), time.monotonic()
        res = h.wrk(f"http://127.0.0.1:{ports['a']}/api/x", c, 3,
                    headers=[f"Authorization: Bearer {token}"])
        busy = h.redis_commands(ports["redis"]) - before - 1
        extra = busy - idle * (time.monotonic() - t0)
        rt[label] = {"requests": res["requests"], "commands": busy,
                     "idle_commands_per_s": idle,
                     "per_request": max(0.0, extra) / max(1, res["requests"])}
        print(f"Redis commands per protected request, cached {label}: "
              f"{rt[label]['per_request']:.5f} ({busy} during {res['requests']} requests; "
              f"{idle:.1f}/s when idle)", flush=True)
    results["redis_commands_per_request"] = rt

    # 4. Redis killed mid-load, restarted 3 s later.
    killed = {}
    def load(name, url, env):
        killed[name] = h.wrk(url, max(1, c // 2), 20, script="status_by_second.lua", env=env)

    threads = [
        threading.Thread(target=load, args=("protected (cached JWT)",
                                            f"http://127.0.0.1:{ports['b']}/api/x",
                                            {"BEARER": jwt})),
        threading.Thread(target=load, args=("issue cc opaque",
                                            f"http://127.0.0.1:{ports['a']}/credential/token",
                                            {"METHOD": "POST", "BASIC": basic,
                                             "BODY": "grant_type=client_credentials"})),
    ]
    for t in threads:
        t.start()
    time.sleep(3)
    kill_at = time.time()
    redis.stop(sig=9)
    procs.remove(redis)
    time.sleep(3)
    restart_at = time.time()
    redis = h.Proc("redis-restarted", redis_args(ports["redis"]), h.LOAD_CPU)
    procs.append(redis)
    # A restarted Redis answers LOADING until it has replayed its append-only file (the
    # tokens of the rounds above): the gateway cannot do better than that moment.
    ready_at = None
    while time.time() < restart_at + 14:
        if h.redis_cli(ports["redis"], "ping") == "PONG":
            ready_at = time.time()
            break
        time.sleep(0.02)
    keys = h.redis_cli(ports["redis"], "dbsize")
    for t in threads:
        t.join()
    results["redis_killed"] = {
        "killed_at": kill_at, "restarted_at": restart_at, "ready_at": ready_at,
        "keys_loaded": keys,
        "seconds": {name: buckets(r["raw"]) for name, r in killed.items()},
    }
    ready = f"+{ready_at - kill_at + 3:.1f} s" if ready_at else "not within 14 s"
    print(f"Redis killed at +3 s, restarted at +6 s, ready ({keys} keys loaded) at {ready}")
    for name, r in killed.items():
        print(f"  {name}:")
        for sec, counts in buckets(r["raw"]).items():
            mark = (" (killed)" if int(kill_at) == sec
                    else " (restarted)" if int(restart_at) == sec
                    else " (ready)" if ready_at and int(ready_at) == sec else "")
            print(f"    {sec}: " + ", ".join(f"{s}: {n}" for s, n in sorted(counts.items())) + mark)
    return results


def report(args, results):
    rounds = results["rounds"]
    print()
    print(f"{'scenario':36s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s}   rounds")
    summary = {}
    for name, rs in rounds.items():
        s = {"rps": h.median_or_none([r["rps"] for r in rs]),
             "p50_ms": h.median_or_none([r["p50_ms"] for r in rs]),
             "p99_ms": h.median_or_none([r["p99_ms"] for r in rs]),
             "per_round_rps": [r["rps"] for r in rs]}
        summary[name] = s
        print(f"{name:36s} {s['rps']:>9.0f} {s['p50_ms'] or 0:8.2f} {s['p99_ms'] or 0:8.2f}   "
              + " / ".join(f"{x:.0f}" for x in s["per_round_rps"]))
    for base in ("issue cc opaque", "issue cc opaque + refresh", "refresh"):
        a, b = rounds.get(f"{base}, redis"), rounds.get(f"{base}, sqlite")
        if a and b:
            ratio = statistics.median(x["rps"] / y["rps"] for x, y in zip(a, b) if y["rps"])
            summary[f"{base}: redis / sqlite"] = ratio
            print(f"{base + ': redis / sqlite':36s} {ratio:9.2f}")
    p = results["propagation_ms"]
    print(f"\nrevocation propagation (3 nodes): p50 {p['p50']:.2f} ms, p99 {p['p99']:.2f} ms, "
          f"max {p['max']:.2f} ms ({p['samples']} samples)")
    for label, r in results["redis_commands_per_request"].items():
        print(f"Redis commands per protected request (cached {label}): {r['per_request']:.5f}")
    doc = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": subprocess.run(["git", "-C", h.ROOT, "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip(),
        "setup": {"rounds": args.rounds, "duration_s": args.duration,
                  "connections": args.connections},
        "summary": summary,
        **results,
    }
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for name in (f"results-{stamp}.json", "latest.json"):
        with open(os.path.join(h.WORK, name), "w") as f:
            json.dump(doc, f, indent=2)
    print(f"\nJSON: {os.path.join(h.WORK, 'latest.json')}")


if __name__ == "__main__":
    sys.exit(main())
