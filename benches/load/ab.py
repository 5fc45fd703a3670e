#!/usr/bin/env python3
"""A/B of two builds: the bare Pingora proxy and tollgate's proxy routes, build A against
build B, in the same run. For measuring one change (a Pingora patch, an option) at a time.

  python3 benches/load/ab.py --a /tmp/bins/base --b /tmp/bins/patched [--rounds 5]

Each of --a and --b is a directory holding a `tollgate` and a `bare` binary (copies of
target/release/tollgate and target/release/examples/bare). Layout and methods are the load
harness's (harness.py): proxies on core 0, upstream and wrk on core 1; rounds run every
scenario of A then of B (A B A B), the ratio B/A is taken per round and its median shown;
callgrind instructions per request are the difference of two runs (500 and 500 + N
requests over one keep-alive connection). Results: a table on stdout and JSON in
target/bench-ab/.
"""

import argparse
import datetime
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

harness.WORK = os.path.join(harness.ROOT, "target", "bench-ab")
WORK = harness.WORK


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="directory with build A's tollgate and bare")
    ap.add_argument("--b", required=True, help="directory with build B's tollgate and bare")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=6, help="seconds per scenario per round")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--callgrind-requests", type=int, default=5000)
    ap.add_argument("--skip-callgrind", action="store_true")
    ap.add_argument("--skip-wrk", action="store_true")
    ap.add_argument("--skip-tollgate", action="store_true", help="bare proxy only")
    args = ap.parse_args()

    os.makedirs(WORK, exist_ok=True)
    for entry in os.listdir(WORK):
        path = os.path.join(WORK, entry)
        if not entry.startswith("ab-") and os.path.isfile(path):
            os.remove(path)
    os.makedirs(os.path.join(WORK, "nginx-tmp"), exist_ok=True)
    procs = []
    try:
        result = run(args, procs)
    finally:
        for p in reversed(procs):
            p.stop()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(WORK, f"ab-{stamp}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nJSON: {path}")


def run(args, procs):
    builds = {"A": os.path.abspath(args.a), "B": os.path.abspath(args.b)}
    ports = {k: harness.free_port() for k in
             ("upstream", "bare A", "bare B", "tg A", "tg A m", "tg B", "tg B m")}
    up = ports["upstream"]
    harness.write("upstream.conf", harness.nginx_upstream_conf(up))
    procs.append(harness.Proc("upstream", ["nginx", "-p", WORK, "-e", "stderr", "-c",
                                           os.path.join(WORK, "upstream.conf")],
                              harness.LOAD_CPU))
    harness.wait_http(up)

    harness.es256_key()
    tollgate_a = os.path.join(builds["A"], "tollgate")
    secret_hash = harness.bench_secret_hash(tollgate_a)
    upstreams = harness.write("upstreams.yaml", harness.tollgate_upstreams(up, secret_hash))

    def bare(ab):
        return [os.path.join(builds[ab], "bare"), "--listen", f"127.0.0.1:{ports['bare ' + ab]}",
                "--upstream", f"127.0.0.1:{up}", "--pid-file",
                os.path.join(WORK, f"bare-{ab}.pid")]

    def tollgate(ab, suffix=""):
        conf = harness.write(f"tollgate-{ab}{suffix}.yaml", harness.tollgate_conf(
            f"tollgate-{ab}{suffix}", ports["tg " + ab], ports[f"tg {ab} m"], upstreams))
        return [os.path.join(builds[ab], "tollgate"), "-c", conf]

    started = {}
    for ab in ("A", "B"):
        started["bare " + ab] = harness.Proc(f"bare-{ab}", bare(ab), harness.PROXY_CPU)
        if not args.skip_tollgate:
            started["tg " + ab] = harness.Proc(f"tollgate-{ab}", tollgate(ab), harness.PROXY_CPU)
    procs.extend(started.values())
    for name in started:
        harness.wait_http(ports[name])
    jwt = harness.post_form(ports["tg A"], "/credential/jwt", "grant_type=client_credentials",
                            f"bench:{harness.SECRET}")["access_token"] \
        if not args.skip_tollgate else "x" * 300
    bearer = f"Authorization: Bearer {jwt}"

    def proxied(port, path):
        return lambda d: harness.wrk(f"http://127.0.0.1:{port}{path}", args.connections, d,
                                     headers=[bearer])

    kinds = [("bare", "bare", "/api/x")]
    if not args.skip_tollgate:
        kinds += [("unprotected", "tg", "/open/x"), ("protected", "tg", "/api/x")]
    scenarios = [(f"{kind} {ab}", proxied(ports[f"{server} {ab}"], path))
                 for kind, server, path in kinds for ab in ("A", "B")]

    result = {"builds": builds, "rounds": {}, "ratios": {}, "instructions_per_request": {}}
    if not args.skip_wrk:
        for _, fn in scenarios:
            fn(1)
        rounds = {name: [] for name, _ in scenarios}
        for r in range(args.rounds):
            for name, fn in scenarios:
                res = fn(args.duration)
                res.pop("raw", None)
                rounds[name].append(res)
                print(f"round {r + 1} {name:16s} {res['rps']:>10.0f} req/s"
                      f"{'  non-2xx ' + str(res['non_2xx']) if res['non_2xx'] else ''}"
                      f"{'  socket errors ' + str(res['socket_errors']) if res['socket_errors'] else ''}",
                      flush=True)
        result["rounds"] = rounds
        print()
        for kind, _, _ in kinds:
            per_round = [b["rps"] / a["rps"] for a, b in
                         zip(rounds[f"{kind} A"], rounds[f"{kind} B"]) if a["rps"]]
            med = statistics.median(per_round)
            result["ratios"][kind] = {"median": med, "per_round": per_round}
            print(f"{kind:12s} B/A req/s: median {med:.3f}, rounds "
                  + " ".join(f"{x:.3f}" for x in per_round))

    for p in started.values():
        p.stop()
        procs.remove(p)

    if not args.skip_callgrind:
        n_low, n_high = 500, 500 + args.callgrind_requests
        if not args.skip_tollgate:
            # State directories of their own, created by one plain start first, so that both
            # callgrind runs start from the same settled store (as the harness does).
            for ab in ("A", "B"):
                settle = harness.Proc(f"tollgate-{ab}-cg-settle", tollgate(ab, "-cg"),
                                      harness.PROXY_CPU)
                harness.wait_http(ports["tg " + ab], "/open/")
                settle.stop()
        cg = {}
        for kind, server, path in kinds:
            for ab in ("A", "B"):
                argv = bare(ab) if server == "bare" else tollgate(ab, "-cg")
                ready = "/" if server == "bare" else "/open/"
                cg[f"{kind} {ab}"] = harness.instructions_per_request(
                    f"{kind}-{ab}", argv, ports[f"{server} {ab}"], path, jwt, ready,
                    n_low, n_high)
            a, b = cg[f"{kind} A"], cg[f"{kind} B"]
            print(f"callgrind {kind:12s} A {a / 1000:7.2f} k  B {b / 1000:7.2f} k  "
                  f"B−A {(b - a) / 1000:+7.2f} k instructions/request", flush=True)
        result["instructions_per_request"] = cg
    return result


if __name__ == "__main__":
    sys.exit(main())
