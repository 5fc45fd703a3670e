#!/usr/bin/env python3
"""gRPC unary calls: a Node @grpc/grpc-js server (tests/interop/grpc/server.mjs) called
directly, and through tollgate (h2c listener, `protocol: h2c` upstream, a JWT checked for
the method's scope), in interleaved rounds (direct, tollgate, direct, tollgate, ...).
h2load drives both over h2c with the same framed request; a call counts when its HTTP
status is 200 and the first call of each kind is checked for `grpc-status: 0`.

Run through `scripts/bench.sh --grpc [--rounds N --duration S]`.

Layout (2 cores): tollgate on core 0; h2load and the gRPC server on core 1. The server is
single-threaded JavaScript, so the direct figure is the server's own ceiling and the
ratio says how much of it a call through tollgate keeps.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.WORK = os.path.join(h.WORK, "grpc")
SCRIPTS = os.path.join(h.ROOT, "tests", "interop", "grpc")
# echo.Msg { text: "hi" } as a gRPC message: uncompressed, 4-byte length, protobuf.
CALL = b"\x00\x00\x00\x00\x04\x0a\x02hi"


def upstreams(port, secret_hash):
    return f"""apis:
  - name: echo
    prefix: /echo.Echo
    upstream: {{ servers: ["127.0.0.1:{port}"], protocol: h2c }}
    auth: jwt
    rules: [{{ methods: [POST], path: /echo.Echo/Say, all_of: ["echo:say"] }}]
credentials:
  - {{ client_id: bench, client_secret_hash: "{secret_hash}", acl: [echo], roles: ["echo:say"] }}
"""


def start_server(procs):
    p = h.Proc("grpc-server", ["node", os.path.join(SCRIPTS, "server.mjs")], h.LOAD_CPU)
    procs.append(p)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(p.log_path) as f:
            for line in f:
                if line.startswith("{"):
                    return json.loads(line)["port"]
        time.sleep(0.1)
    raise SystemExit(f"the gRPC server did not start; see {p.log_path}")


def check_call(port, token):
    """One call by the Node client; it must succeed (grpc-status 0)."""
    out = subprocess.run(["node", os.path.join(SCRIPTS, "client.mjs"), f"127.0.0.1:{port}",
                          "Say", token or "-", "hi"], capture_output=True, text=True,
                         check=True).stdout
    res = json.loads(out)
    if res["code"] != 0:
        raise SystemExit(f"a call to 127.0.0.1:{port} failed: {res}")


def h2load(port, token, conns, streams, duration):
    body = h.write("call.bin", "")
    with open(body, "wb") as f:
        f.write(CALL)
    argv = ["taskset", "-c", h.LOAD_CPU, "h2load", "-D", str(duration), "-c", str(conns),
            "-m", str(streams), "-d", body, "-H", "content-type: application/grpc",
            "-H", "te: trailers"]
    if token:
        argv += ["-H", f"authorization: Bearer {token}"]
    argv.append(f"http://127.0.0.1:{port}/echo.Echo/Say")
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    reqs = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored", out)
    if not (rps and codes and reqs):
        raise SystemExit(f"cannot read h2load's output:\n{out}")
    return {"rps": float(rps.group(1)), "ok_2xx": int(codes.group(1)),
            "failed": int(reqs.group(5)) + int(reqs.group(6))}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--streams", type=int, default=10, help="concurrent calls per connection")
    args = ap.parse_args()
    os.makedirs(h.WORK, exist_ok=True)
    procs = []
    try:
        run(args, procs)
    finally:
        for p in reversed(procs):
            p.stop()


def run(args, procs):
    server = start_server(procs)
    ports = {k: h.free_port() for k in ("tg", "tgm")}
    h.es256_key()
    secret_hash = h.bench_secret_hash()
    upstreams_file = h.write("upstreams.yaml", upstreams(server, secret_hash))
    conf = h.tollgate_conf("tollgate", ports["tg"], ports["tgm"], upstreams_file).replace(
        f"  - addr: 127.0.0.1:{ports['tg']}\n", f"  - addr: 127.0.0.1:{ports['tg']}\n    h2c: true\n")
    conf = h.write("tollgate.yaml", conf)
    procs.append(h.Proc("tollgate", [h.TOLLGATE, "-c", conf], h.PROXY_CPU))
    h.wait_http(ports["tg"], "/.well-known/jwks.json")
    jwt = h.post_form(ports["tg"], "/credential/jwt", "grant_type=client_credentials",
                      f"bench:{h.SECRET}")["access_token"]
    check_call(server, None)
    check_call(ports["tg"], jwt)

    scenarios = [
        ("gRPC unary, direct", lambda d: h2load(server, None, args.connections, args.streams, d)),
        ("gRPC unary, through tollgate",
         lambda d: h2load(ports["tg"], jwt, args.connections, args.streams, d)),
    ]
    for _, fn in scenarios:
        fn(1)
    rounds = {name: [] for name, _ in scenarios}
    for r in range(args.rounds):
        for name, fn in scenarios:
            res = fn(args.duration)
            rounds[name].append(res)
            print(f"round {r + 1} {name:30s} {res['rps']:>9.0f} calls/s  "
                  f"2xx {res['ok_2xx']}  failed {res['failed']}", flush=True)
    if not args.rounds:
        return
    print("\nmedian calls/s:")
    for name, _ in scenarios:
        print(f"  {name:30s} {statistics.median(x['rps'] for x in rounds[name]):>9.0f}")
    ratio = statistics.median(t["rps"] / d["rps"] for d, t in
                              zip(rounds[scenarios[0][0]], rounds[scenarios[1][0]]) if d["rps"])
    print(f"  through tollgate / direct:     {ratio:.3f}")


if __name__ == "__main__":
    sys.exit(main())
