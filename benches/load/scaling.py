#!/usr/bin/env python3
"""Flat costs as configurations grow (issue 21, item 3): the protected route's throughput
on a gateway with a large configuration or state against one with a small one, same run,
interleaved rounds (A B A B ...), ratios taken per round. Three scenarios:

  1. issuers: 100 external issuers configured, the API accepting all of them, called with
     a JWT of the LAST-listed issuer, against 1 issuer (the same one, same token). The
     token is verified once and then served from the validation cache on both.
  2. revocations: 1,000,000 live jti revocations (written straight into the SQLite
     store's `revocations` table before start; the gateway loads the live set at start)
     against none; a cached own JWT. Also RSS growth per revocation.
  3. consumers: an API with `rate_limit` (limits high enough that nothing is refused) on
     which 100,000 distinct consumers made a request, against 10 consumers. Consumers are
     an external issuer's tokens with distinct `client_id` (the limiter keys on issuer +
     client_id, src/proxy/admission.rs external_consumer); BOTH gateways are first sent
     the same number of distinct tokens (distinct jti and sub; 10 client_ids on A, one
     each on B), so their validation caches hold the same number of tokens and of
     distinct holders (src/auth.rs Holders), and only the limiter state differs. Then one
     consumer's cached token is measured. Also RSS growth per consumer (B - A): the
     limiter's ~20-40 B a consumer is near the noise of a ~170 MB process
     (`--validation-cache 1000` shrinks the rest);
     `--no-limit` drops the API's rate_limit, a control for that memory figure.

Layout (2 cores): the gateways on core 0 (one worker thread each); wrk, the nginx upstream
and the JWKS server on core 1. Run through `scripts/bench.sh --scaling [--rounds N ...]`.
Results: a table on stdout, JSON in target/bench/scaling/latest.json.
"""

import argparse
import base64
import json
import multiprocessing
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.WORK = os.path.join(h.WORK, "scaling")

# wrk: one request per line of a file from line START on (each line once); once the lines
# run out, requests go to FALLBACK without a token (cheap, counted as missing).
LUA = r"""
local path = os.getenv("PATH_")
local fallback = os.getenv("FALLBACK")
local file = os.getenv("LINES")
local start = tonumber(os.getenv("START") or "0")
function init(args)
  values, used, missing, k = {}, 0, 0, 0
  for line in io.lines(file) do
    if k >= start then values[#values + 1] = line end
    k = k + 1
  end
end
function request()
  used = used + 1
  local v = values[used]
  if v then
    return wrk.format("GET", path, { Authorization = "Bearer " .. v })
  end
  missing = missing + 1
  return wrk.format("GET", fallback)
end
function done(summary, latency, requests)
end
"""


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    k = ec.generate_private_key(ec.SECP256R1())
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


def jwk(key_pem, kid):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    n = load_pem_private_key(key_pem, None).public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64(n.x.to_bytes(32, "big")),
            "y": b64(n.y.to_bytes(32, "big")), "kid": kid, "alg": "ES256", "use": "sig"}


def _sign(job):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    key_pem, kid, claims_list = job
    key = load_pem_private_key(key_pem, None)
    header = b64(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": kid},
                            separators=(",", ":")).encode())
    out = []
    for c in claims_list:
        si = f"{header}.{b64(json.dumps(c, separators=(',', ':')).encode())}"
        r, s = decode_dss_signature(key.sign(si.encode(), ec.ECDSA(hashes.SHA256())))
        out.append(f"{si}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}")
    return out


def sign_many(key_pem, kid, claims_list):
    procs = max(1, min(os.cpu_count() or 1, 4))
    per = -(-len(claims_list) // procs)
    jobs = [(key_pem, kid, claims_list[i:i + per]) for i in range(0, len(claims_list), per)]
    if len(jobs) == 1:
        return _sign(jobs[0])
    with multiprocessing.Pool(len(jobs)) as pool:
        return [t for chunk in pool.map(_sign, jobs) for t in chunk]


def rss_kib(pid):
    """VmRSS of the gateway (the child of taskset: exec'd, so the same PID)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def cache_entries(mport, which):
    return h.scrape_metrics(mport).get(f'tollgate_cache_entries{{cache="{which}"}}')


class Gateway:
    def __init__(self, name, upstreams_text, procs, extra_conf=""):
        self.name = name
        self.port, self.mport = h.free_port(), h.free_port()
        ups = h.write(f"{name}-upstreams.yaml", upstreams_text)
        self.conf = h.write(f"{name}.yaml", h.tollgate_conf(name, self.port, self.mport, ups)
                            + extra_conf)
        self.procs = procs
        self.proc = None

    def start(self):
        self.proc = h.Proc(self.name, [h.TOLLGATE, "-c", self.conf], h.PROXY_CPU)
        self.procs.append(self.proc)
        h.wait_http(self.port, "/open/", timeout=300)
        return self

    def stop(self):
        self.proc.stop()
        self.procs.remove(self.proc)

    @property
    def pid(self):
        return self.proc.p.pid

    def url(self, path="/api/x"):
        return f"http://127.0.0.1:{self.port}{path}"


def interleave(args, pairs):
    """pairs: [(label, gateway, token)] run in turn each round; returns {label: [res]}."""
    rounds = {label: [] for label, _, _ in pairs}
    for r in range(args.rounds):
        for label, gw, token in pairs:
            res = h.wrk(gw.url(), args.connections, args.duration,
                        headers=[f"Authorization: Bearer {token}"])
            res.pop("raw", None)
            res["rss_kib"] = rss_kib(gw.pid)
            rounds[label].append(res)
            print(f"  round {r + 1} {label:34s} {res['rps']:>9.0f} req/s  p99 "
                  f"{res['p99_ms'] or float('nan'):.2f} ms"
                  f"{'  non-2xx ' + str(res['non_2xx']) if res['non_2xx'] else ''}",
                  flush=True)
    return rounds


def summarise(name, rounds, small, big, target, extra=None):
    ratios = [b["rps"] / s["rps"] if s["rps"] else 0.0
              for s, b in zip(rounds[small], rounds[big])]
    out = {
        "scenario": name, "small": small, "big": big, "target": target,
        "per_round_ratios": ratios, "ratio_median": statistics.median(ratios),
        "small_rps_median": statistics.median(x["rps"] for x in rounds[small]),
        "big_rps_median": statistics.median(x["rps"] for x in rounds[big]),
        "small_p99_ms_median": h.median_or_none(x["p99_ms"] for x in rounds[small]),
        "big_p99_ms_median": h.median_or_none(x["p99_ms"] for x in rounds[big]),
        "non_2xx": sum(x["non_2xx"] for x in rounds[small] + rounds[big]),
        "rounds": rounds,
    }
    out.update(extra or {})
    print(f"  {name}: ratio {out['ratio_median']:.3f} (per round "
          + " ".join(f"{r:.3f}" for r in ratios) + f"), target >= {target}", flush=True)
    return out


def check_ok(gw, token, what):
    deadline = time.monotonic() + 30
    while True:
        res = h.wrk(gw.url(), 1, 1, headers=[f"Authorization: Bearer {token}"])
        if res["requests"] and not res["non_2xx"]:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: the token never passed on {gw.name} "
                             f"(log: {gw.proc.log_path})")
        time.sleep(0.5)


# ---------------------------------------------------------------------------------------


def api_line(up, name="api", extra=""):
    rules = '[{ methods: [GET], path: "/api/**", all_of: [bench:read] }]'
    return (f'  - {{ name: {name}, prefix: /api, upstream: {{ servers: ["127.0.0.1:{up}"] }}, '
            f'auth: jwt{extra}, rules: {rules} }}')


def open_line(up):
    return (f'  - {{ name: open, prefix: /open, upstream: {{ servers: ["127.0.0.1:{up}"] }}, '
            f'auth: none }}')


def issuer_line(i, jwks_port):
    return (f'  - {{ name: idp-{i}, issuer: "https://idp-{i}.bench.test", '
            f'jwks_uri: "http://127.0.0.1:{jwks_port}/jwks-{i}.json", '
            f'audiences: [api], algorithms: [ES256] }}')


def ext_claims(i, **kw):
    now = int(time.time())
    c = {"iss": f"https://idp-{i}.bench.test", "sub": "user-1", "aud": "api",
         "exp": now + 4 * 3600, "iat": now, "client_id": "bench-app", "scope": "bench:read"}
    c.update(kw)
    return c


def scenario_issuers(args, ports, keys, procs):
    n = args.issuers
    last = n - 1
    small = ["apis:", open_line(ports["up"]), api_line(ports["up"], extra=f", issuers: [idp-{last}]"),
             "issuers:", issuer_line(last, ports["jwks"])]
    names = ", ".join(f"idp-{i}" for i in range(n))
    big = ["apis:", open_line(ports["up"]), api_line(ports["up"], extra=f", issuers: [{names}]"),
           "issuers:"] + [issuer_line(i, ports["jwks"]) for i in range(n)]
    a = Gateway("issuers-1", "\n".join(small) + "\n", procs).start()
    b = Gateway(f"issuers-{n}", "\n".join(big) + "\n", procs).start()
    token = sign_many(keys[last], f"idp-{last}-k", [ext_claims(last)])[0]
    for gw in (a, b):
        check_ok(gw, token, "issuers")
    rounds = interleave(args, [("1 issuer", a, token), (f"{n} issuers, last", b, token)])
    res = summarise("issuers", rounds, "1 issuer", f"{n} issuers, last", 0.95,
                    {"issuers": n})
    a.stop()
    b.stop()
    return res


def scenario_revocations(args, ports, procs, secret_hash):
    count = args.revocations
    ups = h.tollgate_upstreams(ports["up"], secret_hash).replace(
        "roles: [bench:read] }", "roles: [bench:read], token: { access_token_lifetime: 4h } }")
    a = Gateway("rev-0", ups, procs).start()
    b = Gateway("rev-many", ups, procs).start()
    b.stop()  # it made its database; fill the revocation table while it is down
    db = os.path.join(h.WORK, "rev-many-state", "tollgate.db")
    t0 = time.monotonic()
    until = int(time.time()) + 86400
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO revocations (kind, id, until) "
        "SELECT 1, 'bench-revoked-' || printf('%08d', i) || '-' || hex(randomblob(8)), ? "
        "FROM n", (count - 1, until))
    con.commit()
    con.close()
    fill_s = time.monotonic() - t0
    t0 = time.monotonic()
    b.start()
    start_s = time.monotonic() - t0
    loaded = cache_entries(b.mport, "revocations")
    print(f"  {count} revocations written in {fill_s:.1f} s; the gateway started in "
          f"{start_s:.1f} s holding {loaded} (cache_entries revocations)", flush=True)
    tokens = {}
    for gw in (a, b):
        tokens[gw.name] = h.post_form(gw.port, "/credential/jwt", "grant_type=client_credentials",
                                      f"bench:{h.SECRET}")["access_token"]
        check_ok(gw, tokens[gw.name], "revocations")
    rss_before = {gw.name: rss_kib(gw.pid) for gw in (a, b)}
    rounds = interleave(args, [("0 revocations", a, tokens[a.name]),
                               (f"{count} revocations", b, tokens[b.name])])
    rss_after = {gw.name: rss_kib(gw.pid) for gw in (a, b)}
    growth = rss_after[b.name] - rss_after[a.name]
    res = summarise("revocations", rounds, "0 revocations", f"{count} revocations", 0.95, {
        "revocations": count, "loaded": loaded, "fill_s": fill_s, "start_s": start_s,
        "rss_kib_start": rss_before, "rss_kib_end": rss_after,
        "bytes_per_revocation": growth * 1024 / count if count else None})
    print(f"  RSS: {rss_after[a.name]} KiB vs {rss_after[b.name]} KiB: "
          f"{res['bytes_per_revocation']:.0f} B per revocation", flush=True)
    a.stop()
    b.stop()
    return res


def fill(gw, lines_file, total, conns):
    """Send every line of `lines_file` once (one request each), in wrk runs of 5 s."""
    done, t0 = 0, time.monotonic()
    lua = os.path.join(h.WORK, "lines.lua")
    while done < total:
        env = {"PATH_": "/api/x", "FALLBACK": "/open/", "LINES": lines_file, "START": str(done)}
        out = subprocess.run(["taskset", "-c", h.LOAD_CPU, "wrk", "-t1", f"-c{conns}", "-d5s",
                              "--timeout", "10s", "-s", lua, gw.url("/api/x")],
                             capture_output=True, text=True, env={**os.environ, **env}).stdout
        m = re.search(r"(\d+) requests in", out)
        # At most `conns` requests may still have been in flight: count only what answered.
        done += int(m.group(1)) if m else 0
        if not m:
            raise SystemExit(f"wrk failed:\n{out}")
    return time.monotonic() - t0


def scenario_consumers(args, ports, keys, procs):
    n_small, n_big, per_tokens = 10, args.consumers, args.consumers
    i = 0  # the issuer idp-0 for both
    limit = "" if args.no_limit else ", rate_limit: { requests: 1, per: 10m, burst: 10000000 }"
    ups = ["apis:", open_line(ports["up"]),
           api_line(ports["up"], extra=f", issuers: [idp-0]{limit}"),
           "issuers:", issuer_line(i, ports["jwks"])]
    ups = "\n".join(ups) + "\n"
    # --validation-cache N: a small cache on both, the filling tokens fall out of it.
    cache = (f"validation_cache: {{ max_entries: {args.validation_cache} }}\n"
             if args.validation_cache else "")
    a = Gateway("consumers-10", ups, procs, cache).start()
    b = Gateway(f"consumers-{n_big}", ups, procs, cache).start()
    token = sign_many(keys[i], f"idp-{i}-k", [ext_claims(i, client_id="consumer-0",
                                                          jti="measured")])[0]
    for gw in (a, b):
        check_ok(gw, token, "consumers")
    rss0 = {gw.name: rss_kib(gw.pid) for gw in (a, b)}
    t0 = time.monotonic()
    files = {}
    for gw, n in ((a, n_small), (b, n_big)):
        # A distinct `sub` on every token: each cached token then has its own holder
        # (src/auth.rs Holders) on both gateways, and only the limiter's key differs.
        claims = [ext_claims(i, client_id=f"consumer-{k % n}", sub=f"user-{k}",
                             jti=f"{gw.name}-{k}")
                  for k in range(per_tokens)]
        files[gw.name] = h.write(f"{gw.name}-tokens.txt",
                                 "\n".join(sign_many(keys[i], f"idp-{i}-k", claims)) + "\n")
    sign_s = time.monotonic() - t0
    fill_s = {}
    for gw in (a, b):
        fill_s[gw.name] = fill(gw, files[gw.name], per_tokens, 10)
    rss1 = {gw.name: rss_kib(gw.pid) for gw in (a, b)}
    valid = {gw.name: cache_entries(gw.mport, "validation") for gw in (a, b)}
    print(f"  {per_tokens} tokens each signed in {sign_s:.1f} s, sent in "
          + ", ".join(f"{k} {v:.1f} s" for k, v in fill_s.items())
          + f"; validation cache {valid}; RSS KiB {rss1}", flush=True)
    miss0 = {gw.name: h.scrape_metrics(gw.mport).get("tollgate_validation_cache_misses_total", 0)
             for gw in (a, b)}
    rounds = interleave(args, [(f"{n_small} consumers", a, token),
                               (f"{n_big} consumers", b, token)])
    misses = {gw.name: h.scrape_metrics(gw.mport).get("tollgate_validation_cache_misses_total", 0)
              - miss0[gw.name] for gw in (a, b)}
    print(f"  validation cache misses during the rounds (the measured token): {misses}",
          flush=True)
    rss2 = {gw.name: rss_kib(gw.pid) for gw in (a, b)}
    growth = (rss2[b.name] - rss0[b.name]) - (rss2[a.name] - rss0[a.name])
    res = summarise("consumers", rounds, f"{n_small} consumers", f"{n_big} consumers", 0.9, {
        "consumers": n_big, "tokens_sent_each": per_tokens, "sign_s": sign_s,
        "fill_s": fill_s, "validation_entries": valid, "misses_during_rounds": misses,
        "rss_kib_start": rss0, "rss_kib_filled": rss1, "rss_kib_end": rss2,
        "bytes_per_consumer": growth * 1024 / (n_big - n_small)})
    print(f"  RSS growth: {rss2[a.name] - rss0[a.name]} KiB (10) vs "
          f"{rss2[b.name] - rss0[b.name]} KiB ({n_big}): "
          f"{res['bytes_per_consumer']:.0f} B per consumer", flush=True)
    a.stop()
    b.stop()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6, help="seconds per gateway per round")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--issuers", type=int, default=100)
    ap.add_argument("--revocations", type=int, default=1_000_000)
    ap.add_argument("--consumers", type=int, default=100_000)
    ap.add_argument("--validation-cache", type=int, default=0,
                    help="validation_cache.max_entries of the consumers scenario's gateways "
                         "(0: the gateway's default, 100,000; 1000 makes the filling tokens "
                         "fall out, for a less noisy memory figure)")
    ap.add_argument("--no-limit", action="store_true",
                    help="consumers scenario without `rate_limit` (a control: what the same "
                         "tokens cost without the limiter)")
    ap.add_argument("--only", choices=["issuers", "revocations", "consumers"], action="append",
                    help="run only these scenarios (repeatable)")
    args = ap.parse_args()
    subprocess.run(["rm", "-rf", h.WORK])
    os.makedirs(os.path.join(h.WORK, "nginx-tmp"))
    procs = []
    try:
        run(args, procs)
    finally:
        for p in reversed(procs):
            p.stop()


def run(args, procs):
    only = set(args.only or ["issuers", "revocations", "consumers"])
    ports = {"up": h.free_port(), "jwks": h.free_port()}
    h.write("upstream.conf", h.nginx_upstream_conf(ports["up"]))
    h.write("lines.lua", LUA)
    h.start_nginx_upstream(procs)
    h.wait_http(ports["up"])
    # The external issuers: a key and a JWKS file each, served on loopback.
    jwks_dir = os.path.join(h.WORK, "jwks")
    os.makedirs(jwks_dir)
    keys = [new_key() for _ in range(max(args.issuers, 1))]
    for i, k in enumerate(keys):
        with open(os.path.join(jwks_dir, f"jwks-{i}.json"), "w") as f:
            json.dump({"keys": [jwk(k, f"idp-{i}-k")]}, f)
    procs.append(h.Proc("jwks", ["python3", "-m", "http.server", str(ports["jwks"]), "--bind",
                                 "127.0.0.1", "--directory", jwks_dir], h.LOAD_CPU))
    h.wait_http(ports["jwks"], "/jwks-0.json")
    h.es256_key()
    secret_hash = h.bench_secret_hash()
    results = []
    if "issuers" in only:
        print(f"issuers: {args.issuers} vs 1", flush=True)
        results.append(scenario_issuers(args, ports, keys, procs))
    if "revocations" in only:
        print(f"revocations: {args.revocations} vs 0", flush=True)
        results.append(scenario_revocations(args, ports, procs, secret_hash))
    if "consumers" in only:
        print(f"consumers: {args.consumers} vs 10", flush=True)
        results.append(scenario_consumers(args, ports, keys, procs))
    print()
    print(f"{'scenario':12s} {'small / big':>34s} {'req/s small':>11s} {'req/s big':>10s} "
          f"{'ratio':>6s} {'target':>6s} {'p99 ms small/big':>17s}  per-round ratios; memory")
    for r in results:
        mem = ""
        if "bytes_per_revocation" in r:
            mem = f"; {r['bytes_per_revocation']:.0f} B/revocation"
        if "bytes_per_consumer" in r:
            mem = f"; {r['bytes_per_consumer']:.0f} B/consumer"
        p99 = f"{r['small_p99_ms_median'] or 0:.2f}/{r['big_p99_ms_median'] or 0:.2f}"
        print(f"{r['scenario']:12s} {r['small'] + ' / ' + r['big']:>34s} "
              f"{r['small_rps_median']:>11.0f} {r['big_rps_median']:>10.0f} "
              f"{r['ratio_median']:>6.3f} {r['target']:>6} {p99:>17s}  "
              + " ".join(f"{x:.3f}" for x in r["per_round_ratios"]) + mem
              + (f"  NON-2XX {r['non_2xx']}" if r["non_2xx"] else ""))
    for r in results:
        for rs in r["rounds"].values():
            for x in rs:
                x.pop("raw", None)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in (f"results-{stamp}.json", "latest.json"):
        with open(os.path.join(h.WORK, name), "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
