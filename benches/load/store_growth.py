#!/usr/bin/env python3
"""Stateful issuance on a grown store: opaque client_credentials issuance and durable
refresh measured after 2,000,000 stored tokens, `sync: full`. Run through
`scripts/bench.sh --store-growth`.

The store is filled once, before any gateway serves: rows written straight into the
SQLite file in the schema the store itself uses, each one what the gateway writes for an
opaque client_credentials token of the bench client (the SHA-256 of a real `tga_` token,
a random `jti`, a time-ordered grant id, a 24 h lifetime so that none expires during the
run), inserted in issue order as the gateway would have. The file is made by the old
schema (version 2, keyed by digest) when `--old` names a binary of it, so both sides
start from the same rows: A runs the old binary on one copy, B this build on another
(which migrates it at start; the time is printed). Rounds interleave A B A B; each side
keeps its store and it keeps growing by what the rounds issue. A third side, `fresh`,
runs this build on an empty store, to show what the grown store costs (nothing, is the
aim).

Layout (2 cores): the gateway under test on core 0 (both run, one is measured at a time),
wrk on core 1.
"""

import argparse
import base64
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.WORK = os.path.join(h.WORK, "store-growth")
DEFAULT_OLD = os.path.join(os.path.dirname(h.WORK), "tollgate-schema2")


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rows(n, now_ms, samples):
    """`n` opaque access-token rows as the gateway stores them, oldest first, issued over
    the hour before `now_ms`; the first and the last token are appended to `samples`."""
    span = 3_600_000
    for i in range(n):
        issued_ms = now_ms - span + span * i // n
        token = "tga_" + b64(secrets.token_bytes(32))
        if i in (0, n - 1):
            samples.append(token)
        grant = f"{issued_ms & 0xfff_ffff_ffff:011x}{b64(secrets.token_bytes(9))}"
        iat = issued_ms // 1000
        yield (hashlib.sha256(token.encode()).digest(), 1, b64(secrets.token_bytes(16)), grant,
               "bench", 2, None, "bench:read", "api", 2, iat, iat + 86_400, None, 0)


def prefill(db, n):
    """Append `n` rows to the token table of the (settled, closed) store file `db`."""
    c = sqlite3.connect(db, isolation_level=None)
    c.execute("PRAGMA synchronous = OFF")
    c.execute("PRAGMA cache_size = -1048576")  # 1 GiB: the digest-keyed table, random pages
    cols = ("digest, kind, jti, grant_id, client_id, family, username, scope, audience, "
            "format, issued_at, expires_at, used_at, revoked")
    sql = f"INSERT INTO tokens ({cols}) VALUES ({', '.join('?' * 14)})"
    samples = []
    gen = rows(n, int(time.time() * 1000), samples)
    done = 0
    while done < n:
        chunk = [r for _, r in zip(range(min(100_000, n - done)), gen)]
        c.execute("BEGIN")
        c.executemany(sql, chunk)
        c.execute("COMMIT")
        done += len(chunk)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    count = c.execute("SELECT count(*) FROM tokens").fetchone()[0]
    version = c.execute("PRAGMA user_version").fetchone()[0]
    c.close()
    return count, version, samples


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--tokens", type=int, default=2_000_000)
    ap.add_argument("--old", default=DEFAULT_OLD,
                    help="a tollgate binary of the old schema (version 2) to compare with; "
                         "'' for none (default: %(default)s if it exists)")
    args = ap.parse_args()
    if args.old and not os.path.exists(args.old):
        print(f"no old binary at {args.old}: measuring this build only", flush=True)
        args.old = ""
    subprocess.run(["rm", "-rf", h.WORK])
    os.makedirs(h.WORK)
    procs = []
    try:
        run(args, procs)
    finally:
        for p in reversed(procs):
            p.stop()


def gateway_conf(name, upstreams, ports):
    conf = h.tollgate_conf(name, ports[0], ports[1], upstreams)
    # Prefilled tokens live 24 h: none expires (and none is purged) during the run.
    return conf.replace("tokens:\n", "tokens:\n  access_token_lifetime: 24h\n", 1)


def run(args, procs):
    up = h.free_port()
    h.write("upstream.conf", h.nginx_upstream_conf(up))
    h.start_nginx_upstream(procs)
    h.wait_http(up)
    h.es256_key()
    secret_hash = h.bench_secret_hash()
    upstreams = h.write("upstreams.yaml", h.tollgate_upstreams(up, secret_hash))

    sides = [("new", h.TOLLGATE), ("fresh", h.TOLLGATE)]
    if args.old:
        sides.insert(0, ("old", args.old))
    confs = {}
    for name, _ in sides:
        confs[name] = (h.write(f"{name}.yaml", gateway_conf(
            name, upstreams, (h.free_port(), h.free_port()))))
    # The file is made by the oldest binary: started once on an empty state directory, so
    # it creates its schema, then stopped.
    maker_name, maker_bin = sides[0]
    seed_state = os.path.join(h.WORK, f"{maker_name}-state")
    p = h.Proc("seed", [maker_bin, "-c", confs[maker_name]], h.PROXY_CPU)
    h.wait_http(port_of(confs[maker_name]))
    p.stop()
    db = os.path.join(seed_state, "tollgate.db")
    t0 = time.monotonic()
    count, version, samples = prefill(db, args.tokens)
    print(f"prefilled {count:,} tokens (schema version {version}) in "
          f"{time.monotonic() - t0:.0f} s; file {os.path.getsize(db) / 1e6:.0f} MB", flush=True)
    for name, _ in sides[1:]:
        if name == "fresh":
            continue
        state = os.path.join(h.WORK, f"{name}-state")
        shutil.rmtree(state, ignore_errors=True)
        shutil.copytree(seed_state, state)

    gateways = {}
    start_rss = {}
    for name, binary in sides:
        t0 = time.monotonic()
        proc = h.Proc(name, [binary, "-c", confs[name]], h.PROXY_CPU)
        procs.append(proc)
        h.wait_http(port_of(confs[name]), timeout=600)
        stored = 0 if name == "fresh" else count
        print(f"{name}: serving after {time.monotonic() - t0:.1f} s on {stored:,} tokens, "
              f"RSS {vm_rss_kib(proc.p.pid) / 1024:.0f} MiB", flush=True)
        gateways[name] = (port_of(confs[name]), proc)
        start_rss[name] = vm_rss_kib(proc.p.pid)

    basic = base64.b64encode(f"bench:{h.SECRET}".encode()).decode()
    basic_refresh = base64.b64encode(f"bench-refresh:{h.SECRET}".encode()).decode()
    c = args.connections

    def issue(port, d, record=None, client=basic):
        env = {"BASIC": client, "FORM": "grant_type=client_credentials"}
        if record:
            env["RECORD"] = record
        return h.wrk(f"http://127.0.0.1:{port}/credential/token", c, d,
                     script="token_request.lua", env=env)

    def refresh(port, d, name):
        tokens = os.path.join(h.WORK, f"{name}-refresh-tokens.txt")
        if os.path.exists(tokens):
            os.remove(tokens)
        issue(port, d, record=tokens, client=basic_refresh)
        return h.wrk(f"http://127.0.0.1:{port}", c, d, script="refresh.lua",
                     env={"BASIC": basic_refresh, "TOKENS": tokens,
                          "ENDPOINT": "/credential/token"})

    # Prefilled tokens are active at introspection: the rows are the store's own.
    for name, (port, _) in gateways.items():
        for token in samples if name != "fresh" else []:
            answer = h.post_form(port, "/credential/introspect", f"token={token}",
                                 f"bench:{h.SECRET}")
            if not answer.get("active"):
                raise SystemExit(f"{name}: a prefilled token is not active: {answer}")
        issue(port, 1)
    rounds = {f"{name} {what}": [] for name, _ in sides for what in ("issue", "refresh")}
    for r in range(args.rounds):
        for what in ("issue", "refresh"):
            for name, (port, proc) in gateways.items():
                res = (issue(port, args.duration) if what == "issue"
                       else refresh(port, args.duration, name))
                res.pop("raw", None)
                res["rss_kib"] = vm_rss_kib(proc.p.pid)
                rounds[f"{name} {what}"].append(res)
                print(f"round {r + 1} {name:5s} {what:8s} {res['rps']:>9.0f} /s  p99 "
                      f"{res['p99_ms'] if res['p99_ms'] is not None else float('nan'):.2f} ms"
                      f"{'  non-2xx ' + str(res['non_2xx']) if res['non_2xx'] else ''}"
                      f"{'  socket errors ' + str(res['socket_errors']) if res['socket_errors'] else ''}",
                      flush=True)
    print()
    for key, rs in rounds.items():
        print(f"{key:12s} median {statistics.median(x['rps'] for x in rs):>9.0f} /s   "
              + " / ".join(f"{x['rps']:.0f}" for x in rs))
    summary = {"prefilled": count, "rounds": rounds}
    pairs = [("new", "fresh")] + ([("new", "old")] if args.old else [])
    for a, b in pairs:
        for what in ("issue", "refresh"):
            ratio = statistics.median(x["rps"] / y["rps"] for x, y in
                                      zip(rounds[f"{a} {what}"], rounds[f"{b} {what}"]))
            summary[f"{what} {a}/{b}"] = ratio
            print(f"{what}: {a} / {b} (median of per-round ratios) {ratio:.2f}")
    for name, (_, proc) in gateways.items():
        print(f"{name}: RSS at the end {vm_rss_kib(proc.p.pid) / 1024:.0f} MiB")
    # A plain start on the grown store: the index rebuilt from the table, no migration.
    port, proc = gateways["new"]
    proc.stop()
    t0 = time.monotonic()
    proc = h.Proc("new-restart", [h.TOLLGATE, "-c", confs["new"]], h.PROXY_CPU)
    procs.append(proc)
    h.wait_http(port, timeout=600)
    summary["restart_s"] = time.monotonic() - t0
    summary["restart_rss_kib"] = vm_rss_kib(proc.p.pid)
    print(f"new: restarted, serving after {summary['restart_s']:.1f} s, RSS "
          f"{summary['restart_rss_kib'] / 1024:.0f} MiB (old at its start: "
          f"{start_rss['old'] / 1024 if 'old' in start_rss else float('nan'):.0f} MiB)")
    with open(os.path.join(h.WORK, "latest.json"), "w") as f:
        json.dump(summary, f, indent=2)


def port_of(conf_path):
    with open(conf_path) as f:
        for line in f:
            if "- addr: 127.0.0.1:" in line:
                return int(line.rsplit(":", 1)[1])
    raise SystemExit(f"no listen address in {conf_path}")


if __name__ == "__main__":
    sys.exit(main())
