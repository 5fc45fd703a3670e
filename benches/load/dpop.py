#!/usr/bin/env python3
"""What DPoP (RFC 9449) costs, in the same run, interleaved rounds (A B C D E F G A B ...):

  1. protected route, cached bearer JWT (the same token every request): the baseline;
  2. protected route, `Authorization: DPoP <token>` and a fresh proof per request (a proof
     is single-use: a replay would be refused with 401);
  3. protected route, a bearer JWT never seen before per request (one ES256 verification
     and the JWT's work per request: what HAProxy's jwt_verify does every time);
  4. client_credentials at /credential/jwt, plain and with a fresh proof per request;
  5. the DPoP route on a Redis store, `dpop.replay: per_node` against `cluster` (one
     SET NX PXAT round trip per proof);

then callgrind instructions per request for 1-3. Run through
`scripts/bench.sh --dpop [--rounds N --duration S]`.

Proofs come from the gateway's own client (`tollgate dpop proof --count N`), made right
before each round (they are accepted for `dpop.proof_max_age`, 300 s here) and sized at
1.5 times the previous run's requests; the fresh bearer tokens are signed here, with the
gateway's signing key (`tokens.signing_key.file`), each with its own `jti`. One wrk Lua
script (written under target/bench/dpop/) sends the next line of a file with each request;
every scenario of 1-3 goes through it, so the load generator does the same work in each.
A run that used up its lines says so (`ran out`), and its extra requests answer 401.

Layout (2 cores): the gateways on core 0 (one worker thread each); wrk, the nginx
upstream and redis-server on core 1.
Results: a table on stdout, JSON in target/bench/dpop/results-<time>.json (and latest.json).
"""

import argparse
import base64
import datetime
import http.client
import json
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.WORK = os.path.join(h.WORK, "dpop")
ENC_KEY = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n"
DPOP_SECTION = "dpop:\n  proof_max_age: 300s\n"
MAX_LINES = 3_000_000

# wrk: one request per line of a file, every line used once. Thread i of T takes lines
# i+1, i+1+T, ... (THREADS: T). Without LINES, the same request every time (the baseline
# goes through this script too, so wrk does the same work in every scenario).
LUA = r"""
local method = os.getenv("METHOD") or "GET"
local path = os.getenv("PATH_")
local name = os.getenv("HEADER")
local prefix = os.getenv("PREFIX") or ""
local file = os.getenv("LINES")
if file == "" then file = nil end
local body = os.getenv("BODY")
if body == "" then body = nil end

local threads, created = {}, 0
function setup(thread)
  thread:set("id", created)
  created = created + 1
  table.insert(threads, thread)
end

function init(args)
  headers = {}
  if os.getenv("AUTH") and os.getenv("AUTH") ~= "" then headers["Authorization"] = os.getenv("AUTH") end
  if body then headers["Content-Type"] = "application/x-www-form-urlencoded" end
  values, used, missing = {}, 0, 0
  if file then
    local me, n, k = tonumber(id) or 0, tonumber(os.getenv("THREADS") or "1"), 0
    for line in io.lines(file) do
      if k % n == me then values[#values + 1] = line end
      k = k + 1
    end
  end
end

function request()
  if file then
    used = used + 1
    local v = values[used]
    if v then headers[name] = prefix .. v else missing = missing + 1; headers[name] = nil end
  end
  return wrk.format(method, path, headers, body)
end

function done(summary, latency, requests)
  local u, m = 0, 0
  for _, t in ipairs(threads) do u = u + (t:get("used") or 0); m = m + (t:get("missing") or 0) end
  io.write(string.format("lines used %d missing %d\n", u, m))
end
"""


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def upstreams(up, secret_hash):
    route = f'upstream: {{ servers: ["127.0.0.1:{up}"] }}'
    rules = '[{ methods: [GET], path: "/api/**", all_of: [bench:read] }]'
    # Four hours: the proxy rounds reuse one token each for the whole run.
    life = "token: { access_token_lifetime: 4h }"
    return f"""apis:
  - {{ name: open, prefix: /open, {route}, auth: none }}
  - {{ name: api, prefix: /api, {route}, auth: jwt, rules: {rules} }}
credentials:
  - {{ client_id: bench, client_secret_hash: "{secret_hash}", acl: [api], roles: [bench:read], {life} }}
  - {{ client_id: bench-dpop, client_secret_hash: "{secret_hash}", acl: [api], roles: [bench:read], dpop_bound_access_tokens: true, {life} }}
"""


def redis_node_conf(name, port, mport, upstreams_file, redis_port, replay):
    state = os.path.join(h.WORK, f"{name}-state")
    os.makedirs(state, exist_ok=True)
    return f"""
listen:
  - addr: 127.0.0.1:{port}
metrics:
  listen: 127.0.0.1:{mport}
issuer: {h.ISSUER}
upstreams_file: {upstreams_file}
state_dir: {state}
server:
  threads: 1
  grace_period: 0s
  graceful_shutdown_timeout: 1s
tokens:
  signing_key: {{ file: {h.WORK}/signing-key.pem, algorithm: ES256, kid: bench }}
store:
  kind: redis
  url: redis://127.0.0.1:{redis_port}/0
  timeout: 500ms
  encryption_key_file: {h.WORK}/store-key
dpop:
  proof_max_age: 300s
  replay: {replay}
log:
  level: warn
  access_log: false
"""


# ---------------------------------------------------------------------------------------
# Proofs and tokens


def make_key(path):
    with open(path, "w") as f:
        subprocess.run([h.TOLLGATE, "dpop", "key"], stdout=f, check=True)


def proofs(key, method, url, count, out, token=None):
    """`count` fresh proofs for `method` `url`, one per line in `out` (made on the load
    core, while the gateway is idle)."""
    argv = ["taskset", "-c", h.LOAD_CPU, h.TOLLGATE, "dpop", "proof", "--key", key,
            "--count", str(count)]
    if token:
        argv += ["--token", token]
    with open(out, "w") as f:
        subprocess.run(argv + [method, url], stdout=f, check=True)
    return out


def proof_list(key, method, url, count, token=None):
    path = proofs(key, method, url, count, os.path.join(h.WORK, "proofs-callgrind.txt"), token)
    with open(path) as f:
        return f.read().split()


def request(port, method, path, headers=None, body=None):
    """(status, parsed JSON body or None, headers)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    return r.status, doc, dict(r.getheaders())


def token_request(port, client, key=None):
    """A client_credentials JWT for `client`; DPoP-bound with a proof of `key`."""
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "Authorization": "Basic " + base64.b64encode(f"{client}:{h.SECRET}".encode())
               .decode()}
    if key:
        headers["DPoP"] = proof_list(key, "POST", f"http://127.0.0.1:{port}/credential/jwt",
                                     1)[0]
    status, doc, _ = request(port, "POST", "/credential/jwt", headers,
                             "grant_type=client_credentials")
    if status != 200:
        raise SystemExit(f"token request for {client} answered {status}: {doc}")
    if key and doc.get("token_type") != "DPoP":
        raise SystemExit(f"the DPoP token request got token_type {doc.get('token_type')}")
    return doc["access_token"]


def _mint(job):
    """Worker: `count` JWTs like `claims`, each with its own jti, signed with the PEM key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key_pem, header, claims, prefix, start, count = job
    key = load_pem_private_key(key_pem, None)
    algo = ec.ECDSA(hashes.SHA256())
    out = []
    for i in range(start, start + count):
        c = dict(claims, jti=f"{prefix}-{i}")
        signing_input = f"{header}.{b64(json.dumps(c, separators=(',', ':')).encode())}"
        r, s = decode_dss_signature(key.sign(signing_input.encode(), algo))
        out.append(f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}")
    return out


class Minter:
    """Distinct JWTs signed offline with the gateway's key: the claims of a token it
    issued, a new jti, iat and exp each."""

    def __init__(self, key_path, sample):
        header, payload, _ = sample.split(".")
        self.header = header
        self.claims = json.loads(unb64(payload))
        self.life = self.claims["exp"] - self.claims["iat"]
        with open(key_path, "rb") as f:
            self.key_pem = f.read()
        self.run = secrets.token_hex(4)
        self.next = 0

    def mint(self, count):
        now = int(time.time())
        claims = dict(self.claims, iat=now, exp=now + self.life)
        procs = max(1, min(os.cpu_count() or 1, 4))
        per = -(-count // procs)
        jobs = [(self.key_pem, self.header, claims, f"bench-{self.run}", self.next + i * per,
                 min(per, count - i * per)) for i in range(procs) if count > i * per]
        self.next += count
        with multiprocessing.Pool(len(jobs)) as pool:
            return [t for chunk in pool.map(_mint, jobs) for t in chunk]

    def to_file(self, count, path):
        with open(path, "w") as f:
            f.write("\n".join(self.mint(count)) + "\n")
        return path


# ---------------------------------------------------------------------------------------
# Load


def lua_wrk(port, path, conns, duration, method="GET", lines=None, header="DPoP",
            prefix="", auth=None, body=None):
    env = {"METHOD": method, "PATH_": path, "HEADER": header, "PREFIX": prefix,
           "LINES": lines or "", "AUTH": auth or "", "BODY": body or "",
           "THREADS": "1"}
    res = h.wrk(f"http://127.0.0.1:{port}{path}", conns, duration,
                script=os.path.join(h.WORK, "lines.lua"), env=env)
    m = re.search(r"lines used (\d+) missing (\d+)", res["raw"])
    res["lines_used"] = int(m.group(1)) if m else None
    res["ran_out"] = int(m.group(2)) if m else None
    if not m:
        print(res["raw"], file=sys.stderr)
    return res


def series_sum(series, name, **labels):
    total = 0.0
    for k, v in series.items():
        if k == name or k.startswith(name + "{"):
            if all(f'{lk}="{lv}"' in k for lk, lv in labels.items()):
                total += v
    return total


class Scenario:
    """One row of the table: how to make its lines for n requests, and how to run it."""

    def __init__(self, name, port, mport, path, kind, method="GET", key=None, token=None,
                 minter=None, auth=None, body=None, redis_port=None):
        self.name, self.port, self.mport, self.path = name, port, mport, path
        self.kind, self.method, self.key, self.token = kind, method, key, token
        self.minter, self.auth, self.body, self.redis_port = minter, auth, body, redis_port
        self.need = None
        self.file = os.path.join(h.WORK, "lines-" + re.sub(r"[^a-z0-9]+", "-", name.lower())
                                 + ".txt")

    @property
    def per_request(self):
        return self.kind in ("proof", "fresh")

    def prepare(self, n):
        if self.kind == "proof":
            url = f"http://127.0.0.1:{self.port}{self.path}"
            proofs(self.key, self.method, url, n, self.file, self.token)
        elif self.kind == "fresh":
            self.minter.to_file(n, self.file)

    def run(self, conns, duration):
        before = h.scrape_metrics(self.mport)
        cmds = h.redis_commands(self.redis_port) if self.redis_port else None
        kw = dict(method=self.method, auth=self.auth, body=self.body)
        if self.kind == "proof":
            kw.update(lines=self.file, header="DPoP")
        elif self.kind == "fresh":
            kw.update(lines=self.file, header="Authorization", prefix="Bearer ")
        res = lua_wrk(self.port, self.path, conns, duration, **kw)
        cmds = h.redis_commands(self.redis_port) - cmds if self.redis_port else None
        after = h.scrape_metrics(self.mport)
        d = {}
        for at in ("api", "token"):
            for result in ("ok", "invalid", "nonce", "replayed", "unavailable"):
                v = (series_sum(after, "tollgate_dpop_proofs_total", at=at, result=result)
                     - series_sum(before, "tollgate_dpop_proofs_total", at=at, result=result))
                if v:
                    d[f"{at}/{result}"] = int(v)
        res["dpop_proofs"] = d
        res["cache_misses"] = int(
            series_sum(after, "tollgate_validation_cache_misses_total")
            - series_sum(before, "tollgate_validation_cache_misses_total"))
        if cmds is not None:
            res["redis_commands"] = cmds
            res["redis_commands_per_request"] = cmds / res["requests"] if res["requests"] else None
        return res


def calibrate(s, conns):
    """Requests per second of `s` over 2 s, after a first 2 s that warms its path up (more
    lines each time it runs out)."""
    n, rates = 60_000, []
    while len(rates) < 2:
        s.prepare(n)
        res = s.run(conns, 2)
        if res["ran_out"] and n < MAX_LINES:
            n *= 2
            continue
        rates.append(res["rps"])
    return max(rates)


# ---------------------------------------------------------------------------------------
# Instructions per request


def requests_with(port, path, headers_list, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    bad = {}
    for headers in headers_list:
        c.request(method, path, headers=headers)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            bad[r.status] = bad.get(r.status, 0) + 1
    c.close()
    if bad:
        raise SystemExit(f"callgrind run: {bad} of {len(headers_list)} requests to {path} "
                         "were not 200")


def callgrind_run(name, argv, port, ready_path, n, make_headers):
    """Instructions of one run serving `n` requests, the headers of which `make_headers(n)`
    makes once the gateway answers (proofs: iat now); None when the run was not the one
    listening or did not shut down cleanly (as harness.callgrind_run)."""
    out = os.path.join(h.WORK, f"callgrind.{name}.{n}")
    if os.path.exists(out):
        os.remove(out)
    p = h.Proc(f"callgrind-{name}-{n}",
               ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
               h.PROXY_CPU)
    try:
        h.wait_http(port, ready_path, timeout=180)
        ours = p.p.pid in h.listener_pids(port)
        if ours:
            requests_with(port, "/api/x", make_headers(n))
    finally:
        p.stop(signal.SIGTERM, timeout=120)
    with open(p.log_path) as f:
        killed = "Process terminating with default action of signal" in f.read()
    if not ours or killed:
        print(f"callgrind {name}, {n} requests: run again", flush=True)
        return None
    return h.callgrind_total(out)


# aws-lc's ES256 verification as the gateway calls it (hash of the signing input, then the
# ECDSA check), and the ECDSA check alone: inclusive costs, by symbol.
VERIFY_FUNCTIONS = {"EVP_DigestVerify": re.compile(r":aws_lc_[0-9_]+_EVP_DigestVerify$"),
                    "ECDSA_do_verify": re.compile(r":aws_lc_[0-9_]+_ECDSA_do_verify$")}
ANNOTATED = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(.*?)(?:\s+\[[^\]]*\])?\s*$")


def inclusive(out_file):
    """{VERIFY_FUNCTIONS key: inclusive instructions} of one callgrind file."""
    text = subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100",
                           "--inclusive=yes", out_file],
                          capture_output=True, text=True, check=True).stdout
    found = {k: 0 for k in VERIFY_FUNCTIONS}
    for line in text.splitlines():
        m = ANNOTATED.match(line)
        if m:
            for k, pat in VERIFY_FUNCTIONS.items():
                if pat.search(m.group(2)):
                    found[k] += int(m.group(1).replace(",", ""))
    return found


def instructions_per_request(name, argv, port, ready_path, n_low, n_high, make_headers):
    """(instructions per request, {verify function: its instructions per request})."""
    totals, files = [], []
    for n in (n_low, n_high):
        for _ in range(3):
            total = callgrind_run(name, argv, port, ready_path, n, make_headers)
            if total is not None:
                break
        else:
            raise SystemExit(f"callgrind {name}: no valid run in three tries")
        totals.append(total)
        files.append(os.path.join(h.WORK, f"callgrind.{name}.{n}"))
    low, high = inclusive(files[0]), inclusive(files[1])
    verify = {k: (high[k] - low[k]) / (n_high - n_low) for k in VERIFY_FUNCTIONS}
    return (totals[1] - totals[0]) / (n_high - n_low), verify


# ---------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8, help="seconds per scenario per round")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--callgrind-requests", type=int, default=5000)
    ap.add_argument("--skip-callgrind", action="store_true")
    ap.add_argument("--skip-cluster", action="store_true",
                    help="skip the Redis per_node / cluster replay scenarios")
    args = ap.parse_args()
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise SystemExit("the fresh-bearer scenario signs tokens with the Python package "
                         "`cryptography`: pip install cryptography (or apt-get install "
                         "python3-cryptography)")
    if not os.path.exists(h.TOLLGATE):
        raise SystemExit(f"no gateway binary at {h.TOLLGATE} (TOLLGATE_BIN overrides it)")
    os.makedirs(h.WORK, exist_ok=True)
    for entry in os.listdir(h.WORK):
        if entry.startswith("results-") and entry.endswith(".json"):
            continue
        path = os.path.join(h.WORK, entry)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
    os.makedirs(os.path.join(h.WORK, "nginx-tmp"))
    with open(os.path.join(h.WORK, "store-key"), "w") as f:
        f.write(ENC_KEY)
    with open(os.path.join(h.WORK, "lines.lua"), "w") as f:
        f.write(LUA)
    # A SIGTERM (timeout, Ctrl-C elsewhere) still stops every server started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    procs = []
    try:
        results = run(args, procs)
    finally:
        for p in reversed(procs):
            p.stop()
    report(args, results)


def run(args, procs):
    ports = {k: h.free_port() for k in ("up", "tg", "tgm", "tgt", "tgtm", "redis", "rn",
                                        "rnm", "rc", "rcm")}
    up = ports["up"]
    h.write("upstream.conf", h.nginx_upstream_conf(up))
    h.start_nginx_upstream(procs)
    h.wait_http(up)
    h.es256_key()
    signing_key = os.path.join(h.WORK, "signing-key.pem")
    secret_hash = h.bench_secret_hash()
    upstreams_file = h.write("upstreams.yaml", upstreams(up, secret_hash))
    conf = h.write("tollgate.yaml", h.tollgate_conf("tollgate", ports["tg"], ports["tgm"],
                                                    upstreams_file) + DPOP_SECTION)
    procs.append(h.Proc("tollgate", [h.TOLLGATE, "-c", conf], h.PROXY_CPU))
    # Issuance gets a gateway of its own (same config), as in harness.py.
    tconf = h.write("tollgate-tokens.yaml", h.tollgate_conf(
        "tollgate-tokens", ports["tgt"], ports["tgtm"], upstreams_file) + DPOP_SECTION)
    procs.append(h.Proc("tollgate-tokens", [h.TOLLGATE, "-c", tconf], h.PROXY_CPU))
    if not args.skip_cluster:
        procs.append(h.Proc("redis", ["redis-server", "--port", str(ports["redis"]), "--bind",
                                      "127.0.0.1", "--dir", h.WORK, "--save", "",
                                      "--appendonly", "no"], h.LOAD_CPU))
        h.wait_redis(ports["redis"])
        for name, replay in (("rn", "per_node"), ("rc", "cluster")):
            c = h.write(f"tollgate-redis-{replay}.yaml", redis_node_conf(
                f"redis-{replay}", ports[name], ports[name + "m"], upstreams_file,
                ports["redis"], replay))
            procs.append(h.Proc(f"tollgate-redis-{replay}", [h.TOLLGATE, "-c", c],
                                h.PROXY_CPU))
    for k in ("tg", "tgt") + (() if args.skip_cluster else ("rn", "rc")):
        h.wait_http(ports[k], "/open/")

    key = os.path.join(h.WORK, "client-key.pem")
    make_key(key)
    tg = ports["tg"]
    bearer = token_request(tg, "bench")
    bound = token_request(tg, "bench-dpop", key)
    minter = Minter(signing_key, bearer)
    # Check each way in once before loading it.
    one = minter.mint(1)[0]
    for what, headers in (
            ("cached bearer", {"Authorization": f"Bearer {bearer}"}),
            ("fresh bearer", {"Authorization": f"Bearer {one}"}),
            ("DPoP", {"Authorization": f"DPoP {bound}", "DPoP": proof_list(
                key, "GET", f"http://127.0.0.1:{tg}/api/x", 1, bound)[0]})):
        status, doc, _ = request(tg, "GET", "/api/x", headers)
        if status != 200:
            raise SystemExit(f"{what}: the protected route answered {status} {doc}")

    basic = "Basic " + base64.b64encode(f"bench:{h.SECRET}".encode()).decode()
    basic_dpop = "Basic " + base64.b64encode(f"bench-dpop:{h.SECRET}".encode()).decode()
    cc = "grant_type=client_credentials"
    scenarios = [
        Scenario("bearer, cached", tg, ports["tgm"], "/api/x", "fixed",
                 auth=f"Bearer {bearer}"),
        Scenario("DPoP, fresh proof", tg, ports["tgm"], "/api/x", "proof", key=key,
                 token=bound, auth=f"DPoP {bound}"),
        Scenario("bearer, fresh token", tg, ports["tgm"], "/api/x", "fresh", minter=minter),
        Scenario("issue cc JWT", ports["tgt"], ports["tgtm"], "/credential/jwt", "fixed",
                 method="POST", auth=basic, body=cc),
        Scenario("issue cc JWT + DPoP", ports["tgt"], ports["tgtm"], "/credential/jwt",
                 "proof", method="POST", key=key, auth=basic_dpop, body=cc),
    ]
    if not args.skip_cluster:
        for name, replay in (("rn", "per_node"), ("rc", "cluster")):
            scenarios.append(Scenario(f"DPoP, redis, {replay}", ports[name],
                                      ports[name + "m"], "/api/x", "proof", key=key,
                                      token=bound, auth=f"DPoP {bound}",
                                      redis_port=ports["redis"]))
    c = args.connections
    for s in scenarios:
        if s.per_request:
            rate = calibrate(s, c)
            s.need = min(MAX_LINES, int(1.5 * rate * args.duration) + 10 * c)
            print(f"calibration {s.name:24s} {rate:>9.0f} req/s -> {s.need} lines per round",
                  flush=True)
        else:
            s.run(c, 2)

    rounds = {s.name: [] for s in scenarios}
    for r in range(args.rounds):
        for s in scenarios:
            t0 = time.monotonic()
            if s.per_request:
                s.prepare(s.need)
            made = time.monotonic() - t0
            res = s.run(c, args.duration)
            res.pop("raw", None)
            res["lines_made"] = s.need if s.per_request else None
            res["lines_seconds"] = round(made, 2) if s.per_request else None
            rounds[s.name].append(res)
            if s.per_request:
                s.need = min(MAX_LINES, max(s.need, int(1.5 * res["requests"]) + 10 * c))
            extra = ""
            if res["dpop_proofs"]:
                extra += "  proofs " + " ".join(f"{k}={v}" for k, v in res["dpop_proofs"].items())
            if s.kind == "fresh" or s.name == "bearer, cached":
                extra += f"  cache misses {res['cache_misses']}"
            if res.get("redis_commands_per_request") is not None:
                extra += f"  redis cmds/req {res['redis_commands_per_request']:.3f}"
            if res["non_2xx"] or res["socket_errors"] or res["ran_out"]:
                extra += (f"  NON-2XX {res['non_2xx']} SOCKET {res['socket_errors']} "
                          f"RAN OUT {res['ran_out']}")
            print(f"round {r + 1} {s.name:24s} {res['rps']:>9.0f} req/s  p50 "
                  f"{res['p50_ms'] or float('nan'):.2f} ms  p99 "
                  f"{res['p99_ms'] or float('nan'):.2f} ms  {res['requests']} requests{extra}",
                  flush=True)

    results = {"rounds": rounds, "ports": ports}
    for p in procs[1:]:
        p.stop()
    del procs[1:]
    if not args.skip_callgrind:
        cg, verify = callgrind(args, upstreams_file, ports, key, signing_key)
        results["instructions_per_request"] = cg
        results["verify_instructions_per_request"] = verify
    return results


def callgrind(args, upstreams_file, ports, key, signing_key):
    """Instructions per request of scenarios 1-3, each run from a fresh start of its own
    state directory (settled by one plain start, which also issues the two tokens)."""
    tg = ports["tg"]
    conf = h.write("tollgate-cg.yaml", h.tollgate_conf("tollgate-cg", tg, ports["tgm"],
                                                       upstreams_file) + DPOP_SECTION)
    argv = [h.TOLLGATE, "-c", conf]
    settle = h.Proc("tollgate-cg-settle", argv, h.PROXY_CPU)
    try:
        h.wait_http(tg, "/open/")
        bearer = token_request(tg, "bench")
        bound = token_request(tg, "bench-dpop", key)
    finally:
        settle.stop()
    minter = Minter(signing_key, bearer)
    url = f"http://127.0.0.1:{tg}/api/x"
    makers = {
        "bearer, cached": lambda n: [{"Authorization": f"Bearer {bearer}"}] * n,
        "DPoP, fresh proof": lambda n: [{"Authorization": f"DPoP {bound}", "DPoP": p}
                                        for p in proof_list(key, "GET", url, n, bound)],
        "bearer, fresh token": lambda n: [{"Authorization": f"Bearer {t}"}
                                          for t in minter.mint(n)],
    }
    n_low, n_high = 500, 500 + args.callgrind_requests
    cg, verify = {}, {}
    for name, make in makers.items():
        tag = re.sub(r"[^a-z]+", "-", name.lower())
        cg[name], verify[name] = instructions_per_request(tag, argv, tg, "/open/", n_low,
                                                          n_high, make)
        print(f"callgrind {name:24s} {cg[name]:>10,.0f} instructions/request, of which "
              f"ES256 verification (EVP_DigestVerify) {verify[name]['EVP_DigestVerify']:,.0f}",
              flush=True)
    return cg, verify


def report(args, results):
    rounds = results["rounds"]
    summary = {}
    print()
    print(f"{'scenario':26s} {'req/s':>9s} {'p50 ms':>7s} {'p99 ms':>7s} {'non-2xx':>8s} "
          f"{'sock err':>8s} {'ran out':>7s}   rounds (req/s)")
    for name, rs in rounds.items():
        s = {
            "rps": h.median_or_none([r["rps"] for r in rs]),
            "p50_ms": h.median_or_none([r["p50_ms"] for r in rs]),
            "p99_ms": h.median_or_none([r["p99_ms"] for r in rs]),
            "non_2xx": sum(r["non_2xx"] for r in rs),
            "socket_errors": sum(r["socket_errors"] for r in rs),
            "ran_out": sum(r["ran_out"] or 0 for r in rs),
            "per_round_rps": [r["rps"] for r in rs],
        }
        summary[name] = s
        fmt = lambda v: f"{v:7.2f}" if v is not None else "      -"  # noqa: E731
        print(f"{name:26s} {s['rps'] or 0:>9.0f} {fmt(s['p50_ms'])} {fmt(s['p99_ms'])} "
              f"{s['non_2xx']:>8d} {s['socket_errors']:>8d} {s['ran_out']:>7d}   "
              + " ".join(f"{x:.0f}" for x in s["per_round_rps"]))

    def per_round(a, b, key="rps"):
        if a not in rounds or b not in rounds:
            return []
        return [x[key] / y[key] for x, y in zip(rounds[a], rounds[b])
                if x.get(key) and y.get(key)]

    ratios = {}
    print()
    print(f"{'ratio (req/s, per round)':44s} {'median':>7s}   rounds")
    for label, a, b in (
            ("DPoP / bearer cached", "DPoP, fresh proof", "bearer, cached"),
            ("DPoP / bearer fresh", "DPoP, fresh proof", "bearer, fresh token"),
            ("bearer fresh / bearer cached", "bearer, fresh token", "bearer, cached"),
            ("issuance DPoP / plain", "issue cc JWT + DPoP", "issue cc JWT"),
            ("redis: cluster / per_node", "DPoP, redis, cluster", "DPoP, redis, per_node"),
            ("redis per_node / sqlite DPoP", "DPoP, redis, per_node", "DPoP, fresh proof")):
        xs = per_round(a, b)
        if not xs:
            continue
        ratios[label] = {"median": statistics.median(xs), "per_round": xs}
        print(f"{label:44s} {statistics.median(xs):>7.3f}   " + " ".join(f"{x:.3f}" for x in xs))

    print()
    print("every proof verified and accepted (tollgate_dpop_proofs_total deltas against wrk's "
          "completed requests):")
    for name, rs in rounds.items():
        for i, r in enumerate(rs):
            if not r["dpop_proofs"] and r["lines_made"] is None:
                continue
            extra = ""
            if r.get("redis_commands_per_request") is not None:
                extra = f"  redis commands/request {r['redis_commands_per_request']:.3f}"
            if name == "bearer, fresh token":
                extra += f"  validation cache misses {r['cache_misses']}"
            print(f"  round {i + 1} {name:24s} requests {r['requests']:>8d}  lines sent "
                  f"{r['lines_used']}  "
                  + (" ".join(f"{k}={v}" for k, v in r["dpop_proofs"].items()) or "-") + extra)

    cg = results.get("instructions_per_request") or {}
    verify = results.get("verify_instructions_per_request") or {}
    checks = []
    if cg:
        base = cg["bearer, cached"]
        dpop_more = cg["DPoP, fresh proof"] - base
        fresh_more = cg["bearer, fresh token"] - base
        print()
        print(f"{'instructions/request':34s} {'total':>10s} {'over cached':>12s} "
              f"{'EVP_DigestVerify':>17s} {'ECDSA_do_verify':>16s}")
        for name, v in cg.items():
            vf = verify.get(name, {})
            print(f"  {name:32s} {v:>10,.0f} {v - base:>+12,.0f} "
                  f"{vf.get('EVP_DigestVerify', 0):>17,.0f} {vf.get('ECDSA_do_verify', 0):>16,.0f}")
        # One ES256 verification, as measured inside the fresh-bearer route (aws-lc,
        # inclusive: SHA-256 of the signing input and the ECDSA check).
        es256 = verify.get("bearer, fresh token", {}).get("EVP_DigestVerify") or None
        print(f"  DPoP − fresh bearer: {dpop_more - fresh_more:+,.0f} "
              "(fresh bearer − cached: one ES256 verification + the JWT's parse, claims, "
              "cache insert)")
        if es256:
            ok = dpop_more <= es256 + 10_000
            checks.append({"name": "DPoP − cached <= one ES256 verification + 10k",
                           "value": dpop_more, "target": es256 + 10_000, "ok": ok})
            print(f"target: DPoP − cached {dpop_more:,.0f} <= one ES256 verification "
                  f"{es256:,.0f} + 10,000 = {es256 + 10_000:,.0f}: {'ok' if ok else 'MISSED'} "
                  f"(the rest of the proof's work: {dpop_more - es256:+,.0f})")
    errors = sum(s["non_2xx"] + s["socket_errors"] + s["ran_out"] for s in summary.values())
    print(f"\nerrors (non-2xx + socket + ran out), all scenarios and rounds: {errors}"
          f"{'' if errors == 0 else '  <- should be 0'}")

    doc = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "setup": {
            "rounds": args.rounds, "duration_s": args.duration,
            "connections": args.connections, "proxy_cpu": h.PROXY_CPU,
            "load_cpu": h.LOAD_CPU, "cpus": os.cpu_count(), "binary": h.TOLLGATE,
            "commit": subprocess.run(["git", "-C", h.ROOT, "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
        },
        "summary": summary,
        "ratios": ratios,
        "rounds": rounds,
        "instructions_per_request": cg or None,
        "verify_instructions_per_request": verify or None,
        "checks": checks,
        "errors": errors,
    }
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for name in (f"results-{stamp}.json", "latest.json"):
        with open(os.path.join(h.WORK, name), "w") as f:
            json.dump(doc, f, indent=2)
    print(f"\nJSON: {os.path.join(h.WORK, f'results-{stamp}.json')}")


if __name__ == "__main__":
    sys.exit(main())
