#!/usr/bin/env python3
"""The admin API's provisioning, measured in one run:

  1. creation rate: credentials per second through `POST /v1/credentials` of one node,
     with a secret the gateway generates (one argon2 hash per credential) and with a
     `client_secret_hash` supplied (no hashing), on SQLite and on Redis; CLIENTS
     concurrent admin clients (wrk -c, a Lua script makes each body); interleaved rounds;
  2. time to effect on another node: a credential created on node A (with an API key, or
     polled at the token endpoint with its secret), node B polled as fast as one client
     can until it answers 200; milliseconds from A's 201 to B's first 200, p50 / p99 / max
     over SAMPLES creations: two nodes on one redis-server (the feed wakes B), and two
     processes on one SQLite file (the graceful-upgrade arrangement; B polls the file);
  3. the protected route with 10 store-provisioned credentials against 100,000 (seeded in
     bulk through the admin API with a supplied hash and one API key each: seeding time
     and rate as the store fills, RSS and idle CPU before and after, bytes per credential
     in memory and in the store), two gateways side by side (SQLite, or Redis with
     --throughput-store redis), rounds interleaved 10 / 100k / 10 / 100k (the order flips
     every round), an API key per request and a cached bearer JWT per request; then both
     gateways restarted over their stores (start-up time and RSS with the credentials
     loaded).

Run through `scripts/bench.sh --provision [--rounds 5 --duration 6 --count 100000 ...]`
(or directly, with TOLLGATE_BIN naming the binary). Every node's admin listener is on
loopback with a key made for the run.

Layout (2 cores): the gateways on core 0 (one worker thread each); wrk, the Python pollers,
the nginx upstream and redis-server on core 1. Phase 1 runs with only the two measured
nodes started (no follower taking core 0 meanwhile); the B nodes of phase 2 start after it
(their catch-up over phase 1's records is timed), and phase 3's gateways after those stop.
Results: a table on stdout, JSON in target/bench/provision/results-<time>.json (and
latest.json).
"""

import argparse
import base64
import datetime
import hashlib
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.WORK = os.path.join(h.WORK, "provision")
ENC_KEY = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n"
ROLE = "bench:read"

# wrk: one `POST /v1/credentials` per request, client ids PREFIX1, PREFIX2, ... (one wrk
# thread, so the counter is exact). HASH: supplied `client_secret_hash` (none: the gateway
# generates the secret). KEYHEX: 48 hex digits; each credential then gets one API key whose
# digest is KEYHEX and its number (never used to call: it fills the key map). COUNT > 0:
# stop after that many answers to creations (the requests sent after the last one ask for a
# missing admin path, 404), and touch MARKER: wrk sleeps out -d, so the caller stops it
# (SIGINT). A creation whose connection broke before its answer would never be counted:
# the caller gives up after its timeout.
LUA = r"""
local prefix = os.getenv("PREFIX")
local hash = os.getenv("HASH") or ""
local keyhex = os.getenv("KEYHEX") or ""
local count = tonumber(os.getenv("COUNT") or "0")
local marker = os.getenv("MARKER") or ""
local admin = "Bearer " .. os.getenv("ADMIN_KEY")
local acl = os.getenv("ACL")
local role = os.getenv("ROLE")

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  sent, created, failed, idle, marked, verified = 0, 0, 0, 0, false, false
  statuses, status_text, first_error = {}, "-", ""
  post_headers = { ["Authorization"] = admin, ["Content-Type"] = "application/json" }
  idle_headers = { ["Authorization"] = admin }
end

function request()
  -- wrk calls request() once before the run to count pipelined requests (and never sends
  -- what it returned): that first call gets no number.
  if not verified then
    verified = true
    return wrk.format("GET", "/v1/idle", idle_headers)
  end
  if count > 0 and sent >= count then
    return wrk.format("GET", "/v1/idle", idle_headers)
  end
  sent = sent + 1
  local body = '{"client_id":"' .. prefix .. sent .. '","acl":["' .. acl .. '"],"roles":["'
    .. role .. '"]'
  if hash ~= "" then
    body = body .. ',"client_secret_hash":"' .. hash .. '"'
  end
  if keyhex ~= "" then
    body = body .. ',"api_keys":[{"name":"k","sha256":"' .. keyhex
      .. string.format("%016d", sent) .. '"}]'
  end
  return wrk.format("POST", "/v1/credentials", post_headers, body .. "}")
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
  elseif status == 404 then
    idle = idle + 1
  else
    failed = failed + 1
    statuses[status] = (statuses[status] or 0) + 1
    local s = {}
    for k, v in pairs(statuses) do s[#s + 1] = k .. "=" .. v end
    status_text = table.concat(s, ",")
    if first_error == "" then first_error = string.gsub(body or "", "%s+", " ") end
  end
  if count > 0 and not marked and created + failed >= count then
    marked = true
    if marker ~= "" then
      local f = io.open(marker, "w")
      if f then f:close() end
    end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    io.write(string.format("created %d failed %d idle %d statuses %s\n",
      t:get("created") or 0, t:get("failed") or 0, t:get("idle") or 0,
      t:get("status_text") or "-"))
    io.write("first_error " .. (t:get("first_error") or "") .. "\n")
  end
end
"""


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


def api_key():
    """A key as `tollgate api-key --generate` makes them (any string works)."""
    return "tgk_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def redis_args(port):
    d = os.path.join(h.WORK, "redis")
    os.makedirs(d, exist_ok=True)
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"]


def redis_store(port, prefix="tollgate:"):
    return (f"store:\n  kind: redis\n  url: redis://127.0.0.1:{port}/0\n"
            f"  key_prefix: \"{prefix}\"\n  timeout: 500ms\n"
            f"  encryption_key_file: {h.WORK}/store-key\n")


def sqlite_store(file=None):
    # `file` absolute: two processes with their own state directories on one database.
    return ("store:\n  kind: sqlite\n  sync: full\n"
            + (f"  file: {file}\n  encryption_key_file: {h.WORK}/store-key\n" if file else ""))


def node_conf(name, port, mport, aport, upstreams, store, admin_digest):
    state = os.path.join(h.WORK, f"{name}-state")
    os.makedirs(state, exist_ok=True)
    # Failed-auth limits far up: B is polled with a key or client it does not know yet, from
    # one address, many times a second. hash_cpu_share 1: a pinned gateway sees one core
    # and would otherwise rest each argon2 slot three times its run between checks.
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
  access_token_lifetime: 1h
{store}
limits:
  failed_auth_per_account: 100000000
  failed_auth_per_ip: 100000000
  hash_cpu_share: 1
admin:
  listen: 127.0.0.1:{aport}
  keys:
    - name: bench
      sha256: {admin_digest}
      scopes: [read, credentials:write, subscriptions:write, registration:write]
log:
  level: warn
  access_log: false
"""


def upstreams(up, secret_hash):
    route = f'upstream: {{ servers: ["127.0.0.1:{up}"] }}'
    rules = f'[{{ methods: [GET], path: "/api/**", all_of: [{ROLE}] }}]'
    return f"""apis:
  - {{ name: open, prefix: /open, {route}, auth: none }}
  - {{ name: api, prefix: /api, {route}, auth: [jwt, api_key], rules: {rules} }}
credentials:
  - {{ client_id: bench, client_secret_hash: "{secret_hash}", acl: [api], roles: [{ROLE}] }}
"""


class Node:
    """One gateway: its ports, process and admin key."""

    def __init__(self, name, store, upstreams_file, admin_key):
        self.name, self.store, self.upstreams_file = name, store, upstreams_file
        self.port, self.mport, self.aport = h.free_port(), h.free_port(), h.free_port()
        self.admin_key = admin_key
        self.conf = h.write(f"{name}.yaml", node_conf(
            name, self.port, self.mport, self.aport, upstreams_file, store,
            sha256_hex(admin_key)))
        self.proc = None

    def start(self, procs):
        self.proc = h.Proc(self.name, [h.TOLLGATE, "-c", self.conf], h.PROXY_CPU)
        procs.append(self.proc)
        return self

    def wait(self, timeout=300.0):
        """Seconds until both listeners answer (polled every 10 ms)."""
        t0 = time.monotonic()
        for port, path in ((self.port, "/open/"), (self.aport, "/openapi.json")):
            while True:
                if not self.proc.alive():
                    raise SystemExit(f"{self.name} exited; see {self.proc.log_path}")
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    c.request("GET", path)
                    c.getresponse().read()
                    c.close()
                    break
                except OSError:
                    if time.monotonic() - t0 > timeout:
                        raise SystemExit(f"{self.name} does not answer on {port}")
                    time.sleep(0.01)
        return time.monotonic() - t0

    def stop(self, procs):
        if self.proc:
            self.proc.stop()
            procs.remove(self.proc)
            self.proc = None

    def rss(self):
        """Resident set of the gateway process, bytes."""
        with open(f"/proc/{self.proc.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return None

    def cpu_seconds(self):
        """User + system CPU time of the gateway process (every thread), seconds."""
        with open(f"/proc/{self.proc.p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def admin(self):
        return Client(self.aport, {"Authorization": f"Bearer {self.admin_key}"})

    def catalog(self):
        status, doc = self.admin().json("GET", "/v1/catalog")
        if status != 200:
            raise SystemExit(f"{self.name}: GET /v1/catalog answered {status}: {doc}")
        return doc["credentials"]


class Client:
    """One keep-alive connection (reopened when the server closes it)."""

    def __init__(self, port, headers=None):
        self.port, self.headers, self.c = port, headers or {}, None

    def call(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.c is None:
                self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.c.request(method, path, body=body, headers={**self.headers,
                                                                 **(headers or {})})
                r = self.c.getresponse()
                data = r.read()
                if (r.getheader("connection") or "").lower() == "close":
                    self.close()
                return r.status, data
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method, path, doc=None):
        body = json.dumps(doc) if doc is not None else None
        status, data = self.call(method, path, body,
                                 {"Content-Type": "application/json"} if body else None)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data.decode(errors="replace")

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


# ---------------------------------------------------------------------------------------
# Creating through wrk


def create_with_wrk(node, conns, prefix, secret_hash=None, keyhex=None, duration=None,
                    count=None, timeout=3600):
    """Credentials PREFIX1... through `node`'s admin API: for `duration` seconds, or
    exactly `count` of them. Returns created, failed, the seconds taken, the rate, wrk's
    latency percentiles."""
    marker = os.path.join(h.WORK, "created.marker")
    if os.path.exists(marker):
        os.remove(marker)
    env = {**os.environ, "PREFIX": prefix, "HASH": secret_hash or "", "KEYHEX": keyhex or "",
           "COUNT": str(count or 0), "MARKER": marker, "ADMIN_KEY": node.admin_key,
           "ACL": "api", "ROLE": ROLE}
    argv = ["taskset", "-c", h.LOAD_CPU, "wrk", "-t1", f"-c{conns}",
            f"-d{duration if duration else timeout}s", "--latency", "--timeout", "30s",
            "-s", os.path.join(h.WORK, "create.lua"), f"http://127.0.0.1:{node.aport}/"]
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=env)
    elapsed = None
    if count:
        while p.poll() is None and not os.path.exists(marker):
            time.sleep(0.005)
        elapsed = time.monotonic() - t0
        if p.poll() is None:
            p.send_signal(signal.SIGINT)   # our own wrk, by its PID: it prints its summary
    out, _ = p.communicate()
    res = h.parse_wrk(out)
    m = re.search(r"created (\d+) failed (\d+) idle (\d+) statuses (\S*)", out)
    if not m:
        raise SystemExit(f"wrk printed no counts:\n{out}")
    created, failed = int(m.group(1)), int(m.group(2))
    if elapsed is None:
        t = re.search(r"requests in ([\d.]+)(ms|s|m)\b", out)
        elapsed = float(t.group(1)) * {"ms": 1e-3, "s": 1.0, "m": 60.0}[t.group(2)] if t else duration
    err = re.search(r"^first_error (.*)$", out, re.M)
    return {
        "created": created,
        "failed": failed,
        "failed_statuses": m.group(4),
        "first_error": err.group(1)[:300] if err and err.group(1) else None,
        "seconds": elapsed,
        "per_s": created / elapsed if elapsed else 0.0,
        "p50_ms": res["p50_ms"],
        "p99_ms": res["p99_ms"],
        "socket_errors": res["socket_errors"],
    }


# ---------------------------------------------------------------------------------------
# Time to effect


def time_to_effect(a, b, samples, way, run_tag, secret_hash, jitter_s):
    """Milliseconds from A's 201 to B's first 200, one sample per new credential. `way`:
    `api_key` (B's protected route with the credential's key) or `token`
    (client_credentials at B's /credential/jwt with its secret: the 200 includes one
    argon2 verification at B; an unknown client id is refused without one). Each creation
    waits a random 0..`jitter_s` first, so it lands at a random point of B's poll cycle
    (B starts a new wait right after applying the last one: without the pause, samples
    would lock to one phase of it)."""
    admin = a.admin()
    poll = Client(b.port)
    delays, polls = [], []
    for i in range(samples):
        cid = f"tte-{run_tag}-{way}-{i}"
        spec = {"client_id": cid, "acl": ["api"], "roles": [ROLE],
                "client_secret_hash": secret_hash}
        if way == "api_key":
            key = api_key()
            spec["api_keys"] = [{"name": "k1", "sha256": sha256_hex(key)}]
            args = ("GET", "/api/x", None, {"x-api-key": key})
        else:
            basic = base64.b64encode(f"{cid}:{h.SECRET}".encode()).decode()
            args = ("POST", "/credential/jwt", "grant_type=client_credentials",
                    {"Authorization": f"Basic {basic}",
                     "Content-Type": "application/x-www-form-urlencoded"})
        time.sleep(random.uniform(0, jitter_s))
        status, doc = admin.json("POST", "/v1/credentials", spec)
        t0 = time.monotonic()
        if status != 201:
            raise SystemExit(f"{a.name}: creating {cid} answered {status}: {doc}")
        n = 0
        while True:
            n += 1
            status, data = poll.call(*args)
            if status == 200:
                break
            if status not in (401, 403):
                raise SystemExit(f"{b.name}: polling for {cid} answered {status}: {data[:300]}")
            if time.monotonic() - t0 > 30:
                raise SystemExit(f"{b.name}: {cid} not in force after 30 s")
        delays.append((time.monotonic() - t0) * 1000)
        polls.append(n)
    admin.close()
    poll.close()
    return {"samples": len(delays), "p50_ms": pct(delays, 0.50), "p99_ms": pct(delays, 0.99),
            "max_ms": max(delays), "min_ms": min(delays),
            "polls_per_sample": statistics.mean(polls), "delays_ms": delays}


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


# ---------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5,
                    help="protected-route rounds (each: 10 and 100k, API key and JWT)")
    ap.add_argument("--duration", type=int, default=6,
                    help="seconds per protected-route scenario per round")
    ap.add_argument("--connections", type=int, default=50, help="wrk connections, protected route")
    ap.add_argument("--create-rounds", type=int, default=2, help="creation-rate rounds")
    ap.add_argument("--create-duration", type=int, default=5,
                    help="seconds per creation-rate scenario per round")
    ap.add_argument("--clients", type=int, default=8, help="concurrent admin clients, creation rate")
    ap.add_argument("--samples", type=int, default=100,
                    help="creations timed to their effect on node B, per store and way")
    ap.add_argument("--jitter-ms", type=float, default=100.0,
                    help="random pause before each timed creation, up to this")
    ap.add_argument("--count", type=int, default=100_000,
                    help="provisioned credentials of the large gateway (the small one has 10)")
    ap.add_argument("--seed-clients", type=int, default=16,
                    help="concurrent admin clients while seeding")
    ap.add_argument("--seed-timeout", type=int, default=900,
                    help="seconds the seeding may take at most")
    ap.add_argument("--throughput-store", choices=("sqlite", "redis"), default="sqlite",
                    help="store of the two protected-route gateways")
    ap.add_argument("--skip-create", action="store_true", help="skip the creation rate")
    ap.add_argument("--skip-effect", action="store_true", help="skip the time to effect")
    ap.add_argument("--skip-sqlite-pair", action="store_true",
                    help="time to effect on Redis only (not two processes on one SQLite file)")
    ap.add_argument("--skip-throughput", action="store_true",
                    help="skip 10 against 100,000 credentials")
    ap.add_argument("--skip-restart", action="store_true",
                    help="skip restarting the two protected-route gateways at the end")
    args = ap.parse_args()
    if args.count < 11:
        raise SystemExit("--count: more than 10")
    if not os.path.exists(h.TOLLGATE):
        raise SystemExit(f"no gateway binary at {h.TOLLGATE} (TOLLGATE_BIN overrides it)")
    h.raise_nofile()
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
    os.chmod(os.path.join(h.WORK, "store-key"), 0o600)
    with open(os.path.join(h.WORK, "create.lua"), "w") as f:
        f.write(LUA)
    # A SIGTERM (timeout, Ctrl-C elsewhere) still stops every server started here.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    procs = []
    started = time.monotonic()
    try:
        results = run(args, procs)
    finally:
        for p in reversed(procs):
            p.stop()
    results["total_seconds"] = time.monotonic() - started
    report(args, results)


def run(args, procs):
    ports = {k: h.free_port() for k in ("up", "redis")}
    h.write("upstream.conf", h.nginx_upstream_conf(ports["up"]))
    h.start_nginx_upstream(procs)
    h.wait_http(ports["up"])
    procs.append(h.Proc("redis", redis_args(ports["redis"]), h.LOAD_CPU))
    h.wait_redis(ports["redis"])

    secret_hash = h.bench_secret_hash()   # one argon2 hash, reused by every credential
    upstreams_file = h.write("upstreams.yaml", upstreams(ports["up"], secret_hash))
    admin_key = "tga_" + secrets.token_urlsafe(32)
    run_tag = secrets.token_hex(3)
    shared_db = os.path.join(h.WORK, "shared-sqlite", "tollgate.db")
    os.makedirs(os.path.dirname(shared_db))
    results = {"setup": {}}

    sa = Node("sqlite-a", sqlite_store(shared_db), upstreams_file, admin_key)
    sb = Node("sqlite-b", sqlite_store(shared_db), upstreams_file, admin_key)
    ra = Node("redis-a", redis_store(ports["redis"]), upstreams_file, admin_key)
    rb = Node("redis-b", redis_store(ports["redis"]), upstreams_file, admin_key)

    # 1. Creation rate, node A of each store alone on the gateway core.
    first = [ra] + ([] if args.skip_sqlite_pair and args.skip_create else [sa])
    if not (args.skip_create and args.skip_effect):
        for n in first:
            n.start(procs)
        for n in first:
            n.wait()
    creation = {}
    if not args.skip_create:
        scenarios = [
            ("sqlite, generated secret", sa, None),
            ("sqlite, supplied hash", sa, secret_hash),
            ("redis, generated secret", ra, None),
            ("redis, supplied hash", ra, secret_hash),
        ]
        for name, node, hsh in scenarios:   # warm each path up (1 s)
            create_with_wrk(node, args.clients, f"warm-{run_tag}-{len(creation)}-"
                            + re.sub(r"\W+", "-", name) + "-", hsh, duration=1)
        creation = {name: [] for name, _, _ in scenarios}
        for r in range(args.create_rounds):
            for name, node, hsh in scenarios:
                prefix = f"rate-{run_tag}-{r}-" + re.sub(r"\W+", "-", name) + "-"
                res = create_with_wrk(node, args.clients, prefix, hsh,
                                      duration=args.create_duration)
                creation[name].append(res)
                print(f"round {r + 1} create {name:26s} {res['per_s']:>8.1f} /s  p50 "
                      f"{res['p50_ms'] or float('nan'):.1f} ms  p99 "
                      f"{res['p99_ms'] or float('nan'):.1f} ms  created {res['created']}"
                      + (f"  FAILED {res['failed']} ({res['failed_statuses']}): "
                         f"{res['first_error']}" if res["failed"] else ""), flush=True)
    results["creation"] = creation

    # 2. Time to effect on node B.
    effect, catch_up = {}, {}
    if not args.skip_effect:
        pairs = [("redis", ra, rb)] + ([] if args.skip_sqlite_pair else [("sqlite", sa, sb)])
        for label, a, b in pairs:
            stored = a.catalog()["store"]
            b.start(procs)
            catch_up[label] = {"records": stored, "seconds": b.wait()}
            served = b.catalog()["served_from_store"]
            print(f"{label}: node B started over {stored} stored credentials, serving "
                  f"{served}, in {catch_up[label]['seconds']:.2f} s", flush=True)
            catch_up[label]["served"] = served
        for label, a, b in pairs:
            for way in ("api_key", "token"):
                # A few untimed first, so both nodes' connections and caches are warm.
                time_to_effect(a, b, 3, way, f"{run_tag}-warm-{label}", secret_hash,
                               args.jitter_ms / 1000)
                res = time_to_effect(a, b, args.samples, way, f"{run_tag}-{label}",
                                     secret_hash, args.jitter_ms / 1000)
                effect[f"{label}, {way}"] = res
                print(f"time to effect {label:6s} {way:7s} p50 {res['p50_ms']:7.2f} ms  p99 "
                      f"{res['p99_ms']:7.2f} ms  max {res['max_ms']:7.2f} ms  "
                      f"({res['samples']} samples, {res['polls_per_sample']:.1f} polls each)",
                      flush=True)
    results["time_to_effect"] = effect
    results["catch_up"] = catch_up
    for n in (ra, rb, sa, sb):
        n.stop(procs)

    # 3. The protected route, 10 against `count` provisioned credentials.
    if not args.skip_throughput:
        results["throughput"] = throughput(args, procs, ports, upstreams_file, admin_key,
                                           secret_hash, run_tag)
    return results


def throughput(args, procs, ports, upstreams_file, admin_key, secret_hash, run_tag):
    redis_port = ports["redis"]

    def store(prefix):
        return (redis_store(redis_port, prefix) if args.throughput_store == "redis"
                else sqlite_store())

    small = Node("gw-10", store(f"tg10-{run_tag}:"), upstreams_file, admin_key).start(procs)
    large = Node("gw-large", store(f"tglarge-{run_tag}:"), upstreams_file, admin_key).start(procs)
    nodes = (small, large)
    small.wait()
    large.wait()
    out = {"store": args.throughput_store, "count": args.count}

    # The probe credential (the one the load uses) and nine others, the same on both.
    probes = {}
    for n in nodes:
        key = api_key()
        status, doc = n.admin().json("POST", "/v1/credentials", {
            "client_id": "probe", "acl": ["api"], "roles": [ROLE],
            "client_secret_hash": secret_hash,
            "api_keys": [{"name": "k1", "sha256": sha256_hex(key)}]})
        if status != 201:
            raise SystemExit(f"{n.name}: creating the probe answered {status}: {doc}")
        res = create_with_wrk(n, 4, "filler-", secret_hash, secrets.token_hex(24), count=9,
                              timeout=60)
        if res["created"] != 9:
            raise SystemExit(f"{n.name}: 9 fillers: {res}")
        jwt = h.post_form(n.port, "/credential/jwt", "grant_type=client_credentials",
                          f"probe:{h.SECRET}")["access_token"]
        probes[n.name] = {"key": key, "jwt": jwt}
        for what, hdr in (("API key", {"x-api-key": key}),
                          ("JWT", {"Authorization": f"Bearer {jwt}"})):
            status, data = Client(n.port).call("GET", "/api/x", headers=hdr)
            if status != 200:
                raise SystemExit(f"{n.name}: the probe's {what} answered {status}: {data[:200]}")

    c = args.connections
    big = f"{args.count // 1000}k" if args.count % 1000 == 0 else str(args.count)
    scen = {}
    for way, hdr in (("API key", lambda p: f"x-api-key: {p['key']}"),
                     ("JWT", lambda p: f"Authorization: Bearer {p['jwt']}")):
        pair = []
        for n, label in ((small, "10"), (large, big)):
            url = f"http://127.0.0.1:{n.port}/api/x"
            header = hdr(probes[n.name])
            pair.append((f"{way}, {label} credentials",
                         lambda d, url=url, header=header: h.wrk(url, c, d, headers=[header])))
        scen[way] = pair

    def settled_rss():
        """RSS of both after the same 2 s of each scenario and a second's rest: the
        allocator has given back what start-up and the probe's argon2 run left, alike
        on both."""
        for pair in scen.values():
            for _, fn in pair:
                fn(2)
        time.sleep(1)
        return {n.name: n.rss() for n in nodes}

    def redis_memory():
        for line in h.redis_cli(redis_port, "INFO", "memory").splitlines():
            if line.startswith("used_memory:"):
                return int(line.split(":")[1])
        return None

    def idle_cpu(seconds=5.0):
        """Share of a core each gateway uses with no request at all (its background
        services: the record feed, purges, checkpoints)."""
        before = {n.name: n.cpu_seconds() for n in nodes}
        t0 = time.monotonic()
        time.sleep(seconds)
        el = time.monotonic() - t0
        return {n.name: (n.cpu_seconds() - before[n.name]) / el for n in nodes}

    rss_before = settled_rss()
    idle_before = idle_cpu()
    redis_before = redis_memory() if args.throughput_store == "redis" else None

    # Seed the large gateway up to `count` with a supplied hash and one API key each.
    seed_n = args.count - 10
    print(f"seeding {seed_n} credentials into {large.name} ({args.seed_clients} admin "
          "clients) ...", flush=True)
    progress, seeding = [], threading.Event()

    def watch():
        # How many the large gateway holds, every 2 s: whether creation slows as it fills.
        watcher = large.admin()
        t0 = time.monotonic()
        while not seeding.wait(2.0):
            status, doc = watcher.json("GET", "/v1/catalog")
            if status == 200:
                progress.append((round(time.monotonic() - t0, 2), doc["credentials"]["store"]))
        watcher.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        seed = create_with_wrk(large, args.seed_clients, f"seed-{run_tag}-", secret_hash,
                               secrets.token_hex(24), count=seed_n, timeout=args.seed_timeout)
    finally:
        seeding.set()
        watcher.join()
    if seed["failed"] or seed["created"] != seed_n:
        raise SystemExit(f"seeding: {seed}")
    time.sleep(2)   # the follower's read-back of its own records settles
    counts = {n.name: n.catalog() for n in nodes}
    if counts[large.name]["served_from_store"] != args.count:
        raise SystemExit(f"{large.name} serves {counts[large.name]} credentials, not {args.count}")
    rss_after = settled_rss()
    idle_after = idle_cpu()
    d_large = rss_after[large.name] - rss_before[large.name]
    d_small = rss_after[small.name] - rss_before[small.name]
    out["seeding"] = {**seed, "credentials": seed_n, "clients": args.seed_clients,
                      "progress": progress}
    out["idle_cpu"] = {"before_seeding": idle_before, "after_seeding": idle_after}
    out["served"] = {k: v["served_from_store"] for k, v in counts.items()}
    out["rss_before"] = rss_before
    out["rss_after_seeding"] = rss_after
    out["rss_bytes_per_credential"] = {
        "growth": (d_large - d_small) / seed_n,
        "large_minus_small": (rss_after[large.name] - rss_after[small.name]) / seed_n,
    }
    if redis_before is not None:
        out["redis_bytes_per_credential"] = (redis_memory() - redis_before) / seed_n
    print(f"seeded {seed_n} in {seed['seconds']:.1f} s ({seed['per_s']:.0f}/s, p99 "
          f"{seed['p99_ms']:.1f} ms); RSS {large.name} {rss_before[large.name] / 2**20:.1f} -> "
          f"{rss_after[large.name] / 2**20:.1f} MiB, {small.name} "
          f"{rss_before[small.name] / 2**20:.1f} -> {rss_after[small.name] / 2**20:.1f} MiB: "
          f"{out['rss_bytes_per_credential']['growth']:.0f} B per credential; idle CPU "
          + ", ".join(f"{k} {idle_before[k] * 100:.1f}% -> {idle_after[k] * 100:.1f}%"
                      for k in idle_before), flush=True)

    rounds = {name: [] for pair in scen.values() for name, _ in pair}
    for r in range(args.rounds):
        for pair in scen.values():
            for name, fn in (pair if r % 2 == 0 else pair[::-1]):
                res = fn(args.duration)
                res.pop("raw", None)
                rounds[name].append(res)
                print(f"round {r + 1} {name:28s} {res['rps']:>9.0f} req/s  p50 "
                      f"{res['p50_ms'] or float('nan'):.2f} ms  p99 "
                      f"{res['p99_ms'] or float('nan'):.2f} ms"
                      + (f"  NON-2XX {res['non_2xx']}" if res["non_2xx"] else "")
                      + (f"  SOCKET {res['socket_errors']}" if res["socket_errors"] else ""),
                      flush=True)
    out["rounds"] = rounds
    out["pairs"] = {way: [name for name, _ in pair] for way, pair in scen.items()}
    out["rss_after_rounds"] = {n.name: n.rss() for n in nodes}

    if not args.skip_restart:
        restart = {}
        for n in nodes:
            n.stop(procs)
            n.start(procs)
            secs = n.wait()
            time.sleep(1)
            restart[n.name] = {"seconds": secs, "rss": n.rss(),
                               "served": n.catalog()["served_from_store"]}
            status, _ = Client(n.port).call("GET", "/api/x",
                                            headers={"x-api-key": probes[n.name]["key"]})
            restart[n.name]["probe_status"] = status
            print(f"restart {n.name}: serving {restart[n.name]['served']} credentials after "
                  f"{secs:.2f} s, RSS {restart[n.name]['rss'] / 2**20:.1f} MiB, probe key "
                  f"{status}", flush=True)
        out["restart"] = restart
        out["rss_bytes_per_credential"]["restarted_large_minus_small"] = (
            (restart[large.name]["rss"] - restart[small.name]["rss"]) / seed_n)
    for n in nodes:
        n.stop(procs)
    if args.throughput_store == "sqlite":
        # After a clean stop: the write-ahead log is checkpointed into the file.
        out["db_bytes"] = {n.name: sum(
            os.path.getsize(f) for f in (os.path.join(h.WORK, f"{n.name}-state", x)
                                         for x in ("tollgate.db", "tollgate.db-wal"))
            if os.path.exists(f)) for n in nodes}
    return out


def report(args, results):
    print()
    creation = results.get("creation") or {}
    summary = {}
    if creation:
        print(f"creation rate ({args.clients} admin clients, {args.create_duration} s per round)"
              f"{'':8s}{'per s':>8s} {'p50 ms':>8s} {'p99 ms':>8s}   rounds (per s)")
        for name, rs in creation.items():
            s = {"per_s": statistics.median(r["per_s"] for r in rs),
                 "p50_ms": h.median_or_none([r["p50_ms"] for r in rs]),
                 "p99_ms": h.median_or_none([r["p99_ms"] for r in rs]),
                 "failed": sum(r["failed"] for r in rs),
                 "per_round": [r["per_s"] for r in rs]}
            summary[f"create, {name}"] = s
            print(f"  {name:54s} {s['per_s']:>8.1f} {s['p50_ms'] or 0:>8.1f} "
                  f"{s['p99_ms'] or 0:>8.1f}   " + " ".join(f"{x:.1f}" for x in s["per_round"])
                  + (f"   FAILED {s['failed']}" if s["failed"] else ""))
    effect = results.get("time_to_effect") or {}
    if effect:
        print()
        print(f"time to effect on node B (ms from A's 201){'':17s}{'p50':>8s} {'p99':>8s} "
              f"{'max':>8s}  samples  polls")
        names = {"api_key": "API key at the protected route",
                 "token": "client_credentials at /credential/jwt"}
        for key, r in effect.items():
            store, way = key.split(", ")
            label = f"{'redis (2 nodes)' if store == 'redis' else 'sqlite (2 procs, 1 file)'}, {names[way]}"
            print(f"  {label:58s} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['max_ms']:>8.2f}  "
                  f"{r['samples']:>7d} {r['polls_per_sample']:>6.1f}")
        for label, cu in (results.get("catch_up") or {}).items():
            print(f"  {label}: node B started over {cu['records']} stored credentials in "
                  f"{cu['seconds']:.2f} s (serving {cu['served']})")
    t = results.get("throughput")
    ratios = {}
    if t:
        s = t["seeding"]
        mib = 2 ** 20
        print()
        print(f"{t['count']:,} provisioned credentials ({t['store']} store): seeding "
              f"{s['credentials']:,} took {s['seconds']:.1f} s ({s['per_s']:.0f}/s, "
              f"{s['clients']} admin clients, p99 {s['p99_ms']:.1f} ms)")
        pts = [(0.0, 10)] + [tuple(x) for x in s.get("progress", [])]
        if len(pts) >= 4:
            k = max(1, len(pts) // 5)
            first = (pts[k][1] - pts[0][1]) / (pts[k][0] - pts[0][0])
            last = (pts[-1][1] - pts[-1 - k][1]) / (pts[-1][0] - pts[-1 - k][0])
            s["rate_first_fifth"], s["rate_last_fifth"] = first, last
            print(f"  creation rate while seeding: {first:.0f}/s in the first fifth "
                  f"(up to {pts[k][1]:,} stored), {last:.0f}/s in the last "
                  f"(from {pts[-1 - k][1]:,})")
        for name, v in t["idle_cpu"]["before_seeding"].items():
            print(f"  idle CPU {name:9s} {v * 100:5.1f}% of a core before seeding, "
                  f"{t['idle_cpu']['after_seeding'][name] * 100:5.1f}% after (no requests)")
        for name in t["rss_before"]:
            print(f"  RSS {name:9s} {t['rss_before'][name] / mib:7.1f} MiB before, "
                  f"{t['rss_after_seeding'][name] / mib:7.1f} after seeding, "
                  f"{t['rss_after_rounds'][name] / mib:7.1f} after the rounds"
                  + (f", {t['restart'][name]['rss'] / mib:7.1f} restarted "
                     f"({t['restart'][name]['seconds']:.2f} s to serve "
                     f"{t['restart'][name]['served']:,})" if t.get("restart") else ""))
        per = t["rss_bytes_per_credential"]
        print(f"  RSS per provisioned credential: {per['growth']:.0f} B (growth while seeding, "
              f"large − small), {per['large_minus_small']:.0f} B (large − small after seeding)"
              + (f", {per['restarted_large_minus_small']:.0f} B (large − small, restarted)"
                 if "restarted_large_minus_small" in per else ""))
        if t.get("redis_bytes_per_credential") is not None:
            print(f"  Redis used_memory per credential: {t['redis_bytes_per_credential']:.0f} B")
        if t.get("db_bytes"):
            print("  store file after a clean stop: " + ", ".join(
                f"{k} {v / mib:.1f} MiB" for k, v in t["db_bytes"].items())
                + f" ({(t['db_bytes']['gw-large'] - t['db_bytes']['gw-10']) / s['credentials']:.0f}"
                " B per credential)")
        rounds = t["rounds"]
        print()
        print(f"protected route (c{args.connections}, {args.duration} s){'':20s}"
              f"{'req/s':>9s} {'p50 ms':>7s} {'p99 ms':>7s}   rounds (req/s)")
        for name, rs in rounds.items():
            s2 = {"rps": h.median_or_none([r["rps"] for r in rs]),
                  "p50_ms": h.median_or_none([r["p50_ms"] for r in rs]),
                  "p99_ms": h.median_or_none([r["p99_ms"] for r in rs]),
                  "non_2xx": sum(r["non_2xx"] for r in rs),
                  "socket_errors": sum(r["socket_errors"] for r in rs),
                  "per_round_rps": [r["rps"] for r in rs],
                  "per_round_p99_ms": [r["p99_ms"] for r in rs]}
            summary[name] = s2
            print(f"  {name:48s} {s2['rps'] or 0:>9.0f} {s2['p50_ms'] or 0:>7.2f} "
                  f"{s2['p99_ms'] or 0:>7.2f}   " + " ".join(f"{x:.0f}" for x in s2["per_round_rps"])
                  + (f"   NON-2XX {s2['non_2xx']}" if s2["non_2xx"] else "")
                  + (f"   SOCKET {s2['socket_errors']}" if s2["socket_errors"] else ""))
        print()
        print(f"  {'ratio large / 10, per round':48s} {'req/s':>9s} {'p99':>7s}   rounds (req/s; p99)")
        for way, (a, b) in t["pairs"].items():
            rr = [y["rps"] / x["rps"] for x, y in zip(rounds[a], rounds[b])
                  if x["rps"] and y["rps"]]
            pr = [y["p99_ms"] / x["p99_ms"] for x, y in zip(rounds[a], rounds[b])
                  if x["p99_ms"] and y["p99_ms"]]
            ratios[way] = {"rps_median": statistics.median(rr) if rr else None,
                           "rps_per_round": rr,
                           "p99_median": statistics.median(pr) if pr else None,
                           "p99_per_round": pr}
            print(f"  {way:48s} {ratios[way]['rps_median'] or 0:>9.3f} "
                  f"{ratios[way]['p99_median'] or 0:>7.3f}   "
                  + " ".join(f"{x:.3f}" for x in rr) + "; " + " ".join(f"{x:.3f}" for x in pr))
    errors = sum(s.get("failed", 0) + s.get("non_2xx", 0) + s.get("socket_errors", 0)
                 for s in summary.values())
    print(f"\nerrors (failed creations, non-2xx, socket errors): {errors}"
          f"{'' if errors == 0 else '  <- should be 0'}   total {results['total_seconds']:.0f} s")
    for rs in (results.get("throughput") or {}).get("rounds", {}).values():
        for r in rs:
            r.pop("raw", None)
    doc = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "setup": {
            **{k: v for k, v in vars(args).items()},
            "proxy_cpu": h.PROXY_CPU, "load_cpu": h.LOAD_CPU, "cpus": os.cpu_count(),
            "binary": h.TOLLGATE,
            "commit": subprocess.run(["git", "-C", h.ROOT, "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
        },
        "summary": summary,
        "ratios": ratios,
        "errors": errors,
        **{k: v for k, v in results.items() if k != "setup"},
    }
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for name in (f"results-{stamp}.json", "latest.json"):
        with open(os.path.join(h.WORK, name), "w") as f:
            json.dump(doc, f, indent=2)
    print(f"JSON: {os.path.join(h.WORK, f'results-{stamp}.json')}")


if __name__ == "__main__":
    sys.exit(main())
