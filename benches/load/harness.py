#!/usr/bin/env python3
"""Load harness: tollgate against nginx, HAProxy and a bare Pingora proxy on this machine,
in interleaved rounds.

Run through `scripts/bench.sh` (it installs nginx, haproxy, wrk and valgrind and builds the
release binary). Layout, on a 2-core machine:

  core 0: the proxy under test (nginx 1 worker / HAProxy 1 thread / bare Pingora 1 worker /
          tollgate 1 worker)
  core 1: the upstream (nginx returning a small 200) and the load generator (wrk -t1)

Every scenario runs once per round, rounds repeat (A B C … A B C …), and the table shows
medians, with ratios taken per round and then their median (both sides of a ratio ran
seconds apart). Instructions per request come from callgrind: the same proxy is run twice
under valgrind with different request counts, and the difference is divided by the
difference in requests, so start-up and shut-down cancel out.

The bare Pingora proxy (benches/bare/main.rs, an example of this crate: same Pingora
features, release profile and allocator) is the framework's floor: `bare / nginx` is
Pingora's own cost, `unprotected / bare` is ours.

Results: a table on stdout, and JSON in target/bench/results-<time>.json (and latest.json).
"""

import argparse
import base64
import datetime
import glob
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOAD = os.path.join(ROOT, "benches", "load")
WORK = os.path.join(ROOT, "target", "bench")
# TOLLGATE_BIN: another build of the gateway (one built outside target/, say).
TOLLGATE = os.environ.get("TOLLGATE_BIN") or os.path.join(ROOT, "target", "release", "tollgate")
# BARE_BIN: another build of the bare proxy (examples/bare), as TOLLGATE_BIN.
BARE = os.environ.get("BARE_BIN") or os.path.join(ROOT, "target", "release", "examples", "bare")
PROXY_CPU = "0"
LOAD_CPU = "1"
SECRET = "bench-secret"
# One issuer for both gateways, so a token from one is valid at the other (same key).
ISSUER = "http://tollgate.bench"


def nofile():
    """The open-file limit the servers we start inherit (raised as far as allowed)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_nofile(cap=65536):
    """Raise this process's open-file limit (which the servers and clients it starts
    inherit) to `cap`, or to the hard limit when that is lower (a container may cap it)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, path="/", timeout=60.0, headers=None):
    """Poll until the server answers an HTTP request (any status)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", path, headers=headers or {})
            c.getresponse().read()
            c.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing answers on 127.0.0.1:{port} after {timeout:.0f}s")
            time.sleep(0.1)


class Proc:
    """A server we started: pinned to a core, output to a log, stopped by its PID only."""

    def __init__(self, name, argv, cpu, env=None):
        self.name = name
        self.log_path = os.path.join(WORK, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.p = subprocess.Popen(
            ["taskset", "-c", cpu, *argv],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.alive():
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


# ---------------------------------------------------------------------------------------
# Configs


def nginx_upstream_conf(port):
    return f"""
worker_processes 1;
daemon off;
pid {WORK}/upstream.pid;
error_log {WORK}/upstream-error.log warn;
worker_rlimit_nofile {nofile()};
events {{ worker_connections {nofile() // 2}; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path {WORK}/nginx-tmp;
  proxy_temp_path {WORK}/nginx-tmp;
  fastcgi_temp_path {WORK}/nginx-tmp;
  uwsgi_temp_path {WORK}/nginx-tmp;
  scgi_temp_path {WORK}/nginx-tmp;
  server {{
    listen 127.0.0.1:{port} backlog=65535;
    location / {{ default_type text/plain; return 200 "ok\\n"; }}
  }}
}}
"""


def nginx_proxy_conf(port, upstream, name, master=True):
    return f"""
worker_processes 1;
daemon off;
master_process {"on" if master else "off"};
pid {WORK}/{name}.pid;
error_log {WORK}/{name}-error.log warn;
worker_rlimit_nofile {nofile()};
events {{ worker_connections {nofile() // 2}; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path {WORK}/nginx-tmp;
  proxy_temp_path {WORK}/nginx-tmp;
  fastcgi_temp_path {WORK}/nginx-tmp;
  uwsgi_temp_path {WORK}/nginx-tmp;
  scgi_temp_path {WORK}/nginx-tmp;
  upstream app {{ server 127.0.0.1:{upstream}; keepalive 256; keepalive_requests 10000000; }}
  server {{
    listen 127.0.0.1:{port} backlog=65535;
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""


def haproxy_conf(port, upstream, pubkey):
    # The same checks tollgate makes on the protected route that HAProxy can express:
    # ES256 signature, expiry, and the scope the route needs.
    return f"""
global
  nbthread 1
  maxconn {nofile() // 2 - 100}
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend api
  bind 127.0.0.1:{port}
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
  http-request deny deny_status 401 unless {{ var(txn.alg) -m str ES256 }}
  http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_verify(txn.alg,"{pubkey}") -m int 1 }}
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny deny_status 401 if {{ var(txn.exp),sub(txn.now) -m int lt 0 }}
  http-request set-var(txn.scope) var(txn.bearer),jwt_payload_query('$.scope')
  http-request deny deny_status 403 unless {{ var(txn.scope) -m sub bench:read }}
  default_backend app
backend app
  server up 127.0.0.1:{upstream}
"""


def bench_secret_hash(binary=None):
    """The argon2id hash of the bench client's secret, made by the gateway itself."""
    return subprocess.run([binary or TOLLGATE, "hash-secret"], input=SECRET,
                          capture_output=True, text=True, check=True).stdout.strip()


def start_nginx_upstream(procs):
    """The nginx upstream of WORK/upstream.conf, on the load core, added to `procs`."""
    procs.append(Proc("upstream", ["nginx", "-p", WORK, "-e", "stderr", "-c",
                                   os.path.join(WORK, "upstream.conf")], LOAD_CPU))


METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


# Redis, for the cluster and DPoP-replay harnesses.
def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                          text=True).stdout.strip()


def redis_commands(port):
    for line in redis_cli(port, "INFO", "stats").splitlines():
        if line.startswith("total_commands_processed:"):
            return int(line.split(":")[1])
    return 0


def wait_redis(port):
    deadline = time.monotonic() + 30
    while redis_cli(port, "PING") != "PONG":
        if time.monotonic() > deadline:
            raise SystemExit("redis-server did not start")
        time.sleep(0.05)


def scrape_metrics(metrics_port):
    """Every series of the gateway's Prometheus text, by full series name."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                  timeout=5).read().decode()
    series = {}
    for line in text.splitlines():
        m = METRIC_LINE.match(line)
        if m:
            series[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return series


def make_cert(work):
    """An ECDSA P-256 self-signed certificate for localhost and 127.0.0.1, in `work`."""
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def tollgate_conf(name, port, metrics_port, upstreams_file, server_extra=""):
    """`server_extra`: more keys of the `server:` section, each line indented two spaces."""
    state = os.path.join(WORK, f"{name}-state")
    os.makedirs(state, exist_ok=True)
    return f"""
listen:
  - addr: 127.0.0.1:{port}
metrics:
  listen: 127.0.0.1:{metrics_port}
issuer: {ISSUER}
upstreams_file: {upstreams_file}
state_dir: {state}
server:
  threads: 1
  grace_period: 0s
  graceful_shutdown_timeout: 1s
{server_extra}tokens:
  signing_key: {{ file: {WORK}/signing-key.pem, algorithm: ES256, kid: bench }}
store:
  sync: full
log:
  level: warn
  access_log: false
"""


def tollgate_upstreams(upstream, secret_hash, extra_routes=0):
    rules = '[{ methods: [GET], path: "/api/**", all_of: [bench:read] }]'
    lines = [
        "apis:",
        f'  - {{ name: open, prefix: /open, upstream: {{ servers: ["127.0.0.1:{upstream}"] }}, auth: none }}',
        f'  - {{ name: api, prefix: /api, upstream: {{ servers: ["127.0.0.1:{upstream}"] }}, auth: jwt, rules: {rules} }}',
    ]
    for i in range(extra_routes):
        lines.append(
            f'  - {{ name: svc-{i}, prefix: /svc-{i}, upstream: {{ servers: ["127.0.0.1:{upstream}"] }}, '
            f'auth: jwt, rules: [{{ methods: [GET], path: "/svc-{i}/**", all_of: [bench:read] }}] }}'
        )
    lines += [
        "credentials:",
        f'  - {{ client_id: bench, client_secret_hash: "{secret_hash}", acl: [api], roles: [bench:read] }}',
        f'  - {{ client_id: bench-refresh, client_secret_hash: "{secret_hash}", acl: [api], roles: [bench:read], token: {{ refresh: true }} }}',
    ]
    return "\n".join(lines) + "\n"


def bare_argv(port, upstream, lowercase=False):
    """The bare Pingora pass-through (benches/bare/main.rs) in front of `upstream`;
    `lowercase`: header names parsed without their case (tollgate's `header_case`)."""
    return [BARE, "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{upstream}",
            "--pid-file", os.path.join(WORK, f"bare-{port}.pid")] + (
                ["--lowercase-header-names"] if lowercase else [])

LOWERCASE = "  header_case: lowercase\n"


def write(name, text):
    path = os.path.join(WORK, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def es256_key():
    """A P-256 key: PKCS#8 PEM for tollgate, SubjectPublicKeyInfo PEM for HAProxy."""
    key = os.path.join(WORK, "signing-key.pem")
    pub = os.path.join(WORK, "signing-pub.pem")
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", key], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub],
                   check=True, capture_output=True)
    return key, pub


# ---------------------------------------------------------------------------------------
# Measuring


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(out):
    def latency(pct):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m.group(1)) * UNITS[m.group(2)] if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": latency(50),
        "p99_ms": latency(99),
        "requests": int(total.group(1)) if total else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
    }


def wrk(url, conns, duration, headers=(), script=None, env=None):
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}s",
            "--latency", "--timeout", "10s"]
    for h in headers:
        argv += ["-H", h]
    if script:
        argv += ["-s", os.path.join(LOAD, script)]
    argv.append(url)
    out = subprocess.run(argv, capture_output=True, text=True,
                         env={**os.environ, **(env or {})}).stdout
    r = parse_wrk(out)
    r["raw"] = out
    return r


def post_form(port, path, form, user=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=form.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    if user:
        req.add_header("Authorization", "Basic " + base64.b64encode(user.encode()).decode())
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def requests_over_one_connection(port, path, n, token=None, tls=False):
    """`n` GETs of `path` over one keep-alive connection (with `tls`, TLS without
    certificate checks), each expected to answer 200."""
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        c = http.client.HTTPSConnection("127.0.0.1", port, timeout=120, context=ctx)
    else:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    bad = 0
    for _ in range(n):
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        r.read()
        bad += r.status != 200
    c.close()
    if bad:
        raise SystemExit(f"callgrind run: {bad} of {n} requests to {path} failed")


def callgrind_total(out_file):
    with open(out_file) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit(f"no totals in {out_file}")


def listener_pids(port):
    """PIDs of the processes listening on 127.0.0.1:`port` (from `ss`)."""
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True,
                         text=True).stdout
    return {int(pid) for pid in re.findall(r"pid=(\d+)", out)}


def callgrind_run(name, argv, port, path, token, ready_path, n):
    """Total instructions of one run of `argv` under callgrind serving `n` requests, or
    None when the run was not the one answering (checked by the listener's PID) or did
    not get to install its own SIGTERM handling (a start-up stuck under valgrind)."""
    out = os.path.join(WORK, f"callgrind.{name}.{n}")
    for f in glob.glob(out + "*"):
        os.remove(f)
    p = Proc(f"callgrind-{name}-{n}",
             ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
             PROXY_CPU)
    wait_http(port, ready_path, timeout=180)
    ours = p.p.pid in listener_pids(port)
    if ours:
        requests_over_one_connection(port, path, n, token)
    p.stop(signal.SIGTERM, timeout=120)
    with open(p.log_path) as f:
        killed = "Process terminating with default action of signal" in f.read()
    if not ours or killed:
        print(f"callgrind {name}, {n} requests: the run under callgrind "
              f"{'was not the one listening' if not ours else 'did not shut down cleanly'}; "
              "running it again", flush=True)
        return None
    return callgrind_total(out)


def instructions_per_request(name, argv, port, path, token, ready_path, n_low, n_high):
    """(instructions at n_high − at n_low) / (n_high − n_low), each run from a fresh start."""
    totals = []
    for n in (n_low, n_high):
        for _ in range(3):
            total = callgrind_run(name, argv, port, path, token, ready_path, n)
            if total is not None:
                break
        else:
            raise SystemExit(f"callgrind {name}: no valid run in three tries")
        totals.append(total)
    return (totals[1] - totals[0]) / (n_high - n_low)


# ---------------------------------------------------------------------------------------


def median_or_none(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8, help="seconds per scenario per round")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--callgrind-requests", type=int, default=5000)
    ap.add_argument("--skip-callgrind", action="store_true")
    ap.add_argument("--skip-scale", action="store_true",
                    help="skip the 10,000-route and 10,000-connection runs")
    ap.add_argument("--skip-memory", action="store_true",
                    help="skip memory per cached token (cargo bench --bench cache_memory)")
    ap.add_argument("--skip-tokens", action="store_true",
                    help="skip the token-service scenarios (proxy scenarios only)")
    args = ap.parse_args()

    if os.cpu_count() is None or os.cpu_count() < 2:
        raise SystemExit("the harness needs two cores: one for the proxy, one for load")
    # As many open files as allowed (a container may cap the hard limit): the
    # 10,000-connection run needs about 10,000 in wrk and in tollgate.
    raise_nofile()
    # A clean working directory, keeping the results of earlier runs.
    os.makedirs(WORK, exist_ok=True)
    for entry in os.listdir(WORK):
        if entry.startswith("results-") and entry.endswith(".json"):
            continue
        path = os.path.join(WORK, entry)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
    os.makedirs(os.path.join(WORK, "nginx-tmp"))

    procs = []
    try:
        results = run(args, procs)
    finally:
        for p in reversed(procs):
            p.stop()
    report(args, results)


def run(args, procs):
    ports = {k: free_port() for k in
             ("upstream", "nginx", "haproxy", "bare", "tollgate", "tollgate_m", "tg10k",
              "tg10k_m", "tgt", "tgt_m", "tglc", "tglc_m", "njs")}
    up = ports["upstream"]

    write("upstream.conf", nginx_upstream_conf(up))
    start_nginx_upstream(procs)
    wait_http(up)

    _, pub = es256_key()
    secret_hash = bench_secret_hash()

    write("nginx.conf", nginx_proxy_conf(ports["nginx"], up, "nginx"))
    procs.append(Proc("nginx", ["nginx", "-p", WORK, "-e", "stderr", "-c",
                                os.path.join(WORK, "nginx.conf")], PROXY_CPU))
    write("haproxy.cfg", haproxy_conf(ports["haproxy"], up, pub))
    procs.append(Proc("haproxy", ["haproxy", "-db", "-f", os.path.join(WORK, "haproxy.cfg")],
                      PROXY_CPU))
    procs.append(Proc("bare", bare_argv(ports["bare"], up), PROXY_CPU))
    # nginx with njs checking the same JWT as HAProxy (benches/load/njs_peer.py).
    import njs_peer
    write("njs.conf", njs_peer.njs_conf(ports["njs"], up, "njs",
                                        pub, WORK))
    procs.append(Proc("nginx-njs", ["nginx", "-p", WORK, "-e", "stderr", "-c",
                                    os.path.join(WORK, "njs.conf")], PROXY_CPU))

    upstreams = write("upstreams.yaml", tollgate_upstreams(up, secret_hash))
    tg_conf = write("tollgate.yaml", tollgate_conf("tollgate", ports["tollgate"],
                                                   ports["tollgate_m"], upstreams))
    procs.append(Proc("tollgate", [TOLLGATE, "-c", tg_conf], PROXY_CPU))
    tg = ports["tollgate"]
    # The same gateway with `server.header_case: lowercase` (one header map, not two).
    tglc_conf = write("tollgate-lc.yaml", tollgate_conf("tollgate-lc", ports["tglc"],
                                                        ports["tglc_m"], upstreams, LOWERCASE))
    procs.append(Proc("tollgate-lc", [TOLLGATE, "-c", tglc_conf], PROXY_CPU))
    # The token-service scenarios get a gateway of their own (same config): the store work
    # they leave behind (checkpoints of a growing log) must not land in the proxy rounds.
    tgt_conf = write("tollgate-tokens.yaml", tollgate_conf("tollgate-tokens", ports["tgt"],
                                                           ports["tgt_m"], upstreams))
    procs.append(Proc("tollgate-tokens", [TOLLGATE, "-c", tgt_conf], PROXY_CPU))
    tgt = ports["tgt"]
    if not args.skip_scale:
        upstreams_10k = write("upstreams-10k.yaml",
                              tollgate_upstreams(up, secret_hash, extra_routes=9_998))
        tg10k_conf = write("tollgate-10k.yaml", tollgate_conf(
            "tollgate-10k", ports["tg10k"], ports["tg10k_m"], upstreams_10k))
        procs.append(Proc("tollgate-10k", [TOLLGATE, "-c", tg10k_conf], PROXY_CPU))

    for port in (ports["nginx"], ports["haproxy"], ports["bare"], tg, tgt, ports["tglc"],
                 ports["njs"]):
        wait_http(port)
    if not args.skip_scale:
        wait_http(ports["tg10k"], timeout=300)

    basic = base64.b64encode(f"bench:{SECRET}".encode()).decode()
    basic_refresh = base64.b64encode(f"bench-refresh:{SECRET}".encode()).decode()
    jwt = post_form(tg, "/credential/jwt", "grant_type=client_credentials",
                    f"bench:{SECRET}")["access_token"]
    opaque = post_form(tgt, "/credential/token", "grant_type=client_credentials",
                       f"bench:{SECRET}")["access_token"]
    bearer = f"Authorization: Bearer {jwt}"
    c = args.connections

    def proxied(port, path):
        return lambda d: wrk(f"http://127.0.0.1:{port}{path}", c, d, headers=[bearer])

    def token_call(path, basic_auth, form, record=None):
        env = {"BASIC": basic_auth, "FORM": form}
        if record:
            env["RECORD"] = record
        return lambda d: wrk(f"http://127.0.0.1:{tgt}{path}", c, d,
                             script="token_request.lua", env=env)

    refresh_file = os.path.join(WORK, "refresh-tokens.txt")

    def issue_with_refresh(d):
        if os.path.exists(refresh_file):
            os.remove(refresh_file)
        return token_call("/credential/token", basic_refresh, "grant_type=client_credentials",
                          record=refresh_file)(d)

    def refresh(d):
        return wrk(f"http://127.0.0.1:{tgt}", c, d, script="refresh.lua",
                   env={"BASIC": basic_refresh, "TOKENS": refresh_file,
                        "ENDPOINT": "/credential/token"})

    # Every proxy gets the same request, bearer token included: what differs is only what
    # it does with the token (nginx and tollgate's unprotected route pass it on unread).
    scenarios = [
        ("nginx proxy_pass", proxied(ports["nginx"], "/api/x")),
        ("bare pingora", proxied(ports["bare"], "/api/x")),
        ("haproxy jwt_verify", proxied(ports["haproxy"], "/api/x")),
        ("nginx + njs WebCrypto", proxied(ports["njs"], "/api/x")),
        ("tollgate unprotected", proxied(tg, "/open/x")),
        ("tollgate protected", proxied(tg, "/api/x")),
        ("tollgate protected, lowercase headers", proxied(ports["tglc"], "/api/x")),
    ]
    if not args.skip_scale:
        scenarios.append(("tollgate protected, 10k routes", proxied(ports["tg10k"], "/api/x")))
    scenarios += [] if args.skip_tokens else [
        ("issue cc JWT", token_call("/credential/jwt", basic, "grant_type=client_credentials")),
        ("issue cc opaque", token_call("/credential/token", basic,
                                       "grant_type=client_credentials")),
        ("issue cc opaque + refresh", issue_with_refresh),
        ("refresh (durable)", refresh),
        ("introspect JWT", token_call("/credential/introspect", basic, f"token={jwt}")),
        ("introspect opaque", token_call("/credential/introspect", basic, f"token={opaque}")),
    ]

    # Warm every path once (connection pools, caches) before measuring.
    for _, fn in scenarios:
        if fn is not refresh:
            fn(1)
    rounds = {name: [] for name, _ in scenarios}
    for r in range(args.rounds):
        for name, fn in scenarios:
            res = fn(args.duration)
            rounds[name].append(res)
            print(f"round {r + 1} {name:32s} {res['rps']:>10.0f} req/s  p99 "
                  f"{res['p99_ms'] if res['p99_ms'] is not None else float('nan'):.2f} ms"
                  f"{'  non-2xx ' + str(res['non_2xx']) if res['non_2xx'] else ''}"
                  f"{'  socket errors ' + str(res['socket_errors']) if res['socket_errors'] else ''}",
                  flush=True)

    results = {"rounds": rounds, "ports": ports}

    if not args.skip_scale:
        res = wrk(f"http://127.0.0.1:{tg}/api/x", 10_000, max(args.duration, 10),
                  headers=[bearer])
        print(f"10,000 connections: {res['rps']:.0f} req/s, {res['requests']} requests, "
              f"non-2xx {res['non_2xx']}, socket errors {res['socket_errors']}", flush=True)
        results["connections_10k"] = res

    # Stop the servers under test before callgrind runs the same configs on their ports.
    for p in procs[1:]:
        p.stop()
    del procs[1:]

    if not args.skip_callgrind:
        # A state directory of its own, created and settled by one plain start first:
        # the store the load rounds left behind holds a large write-ahead log, and the
        # first start over it would recover that log in one of the two runs only.
        cg_conf = write("tollgate-cg.yaml", tollgate_conf(
            "tollgate-cg", tg, ports["tollgate_m"], upstreams))
        settle = Proc("tollgate-cg-settle", [TOLLGATE, "-c", cg_conf], PROXY_CPU)
        wait_http(tg, "/open/")
        settle.stop()
        n_low, n_high = 500, 500 + args.callgrind_requests
        write("nginx-cg.conf", nginx_proxy_conf(ports["nginx"], up, "nginx-cg", master=False))
        cg = {
            "nginx proxy_pass": instructions_per_request(
                "nginx", ["nginx", "-p", WORK, "-e", "stderr", "-c",
                          os.path.join(WORK, "nginx-cg.conf")],
                ports["nginx"], "/api/x", jwt, "/", n_low, n_high),
            "bare pingora": instructions_per_request(
                "bare", bare_argv(ports["bare"], up), ports["bare"], "/api/x", jwt, "/",
                n_low, n_high),
            "tollgate unprotected": instructions_per_request(
                "tollgate-open", [TOLLGATE, "-c", cg_conf], tg, "/open/x", jwt, "/open/",
                n_low, n_high),
            "tollgate protected": instructions_per_request(
                "tollgate-protected", [TOLLGATE, "-c", cg_conf], tg, "/api/x", jwt, "/open/",
                n_low, n_high),
            "bare pingora, lowercase headers": instructions_per_request(
                "bare-lc", bare_argv(ports["bare"], up, lowercase=True), ports["bare"],
                "/api/x", jwt, "/", n_low, n_high),
        }
        cg_lc = write("tollgate-cg-lc.yaml", tollgate_conf(
            "tollgate-cg", tg, ports["tollgate_m"], upstreams, LOWERCASE))
        cg["tollgate protected, lowercase headers"] = instructions_per_request(
            "tollgate-protected-lc", [TOLLGATE, "-c", cg_lc], tg, "/api/x", jwt, "/open/",
            n_low, n_high)
        for name, v in cg.items():
            print(f"callgrind {name:28s} {v / 1000:8.1f} k instructions/request", flush=True)
        results["instructions_per_request"] = cg

    if not args.skip_memory:
        results["cache_memory"] = cache_memory()
    return results


def cache_memory():
    """Memory per cached token with 1,000,000 distinct tokens (benches/cache_memory.rs)."""
    out = subprocess.run(["cargo", "bench", "--locked", "--bench", "cache_memory"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    found = {}
    for key, label in (("heap", "heap bytes"), ("rss", "RSS bytes")):
        m = re.search(rf"{label} per cached token: ([\d.]+)", out)
        if not m:
            raise SystemExit(f"cache_memory printed no {label}:\n{out}")
        found[f"{key}_bytes_per_token"] = float(m.group(1))
    print(f"memory per cached token (1,000,000 tokens): {found['rss_bytes_per_token']:.0f} B RSS, "
          f"{found['heap_bytes_per_token']:.0f} B heap", flush=True)
    return found


def report(args, results):
    rounds = results["rounds"]
    summary = {}
    print()
    print(f"{'scenario':34s} {'req/s':>10s} {'p50 ms':>8s} {'p99 ms':>8s}   rounds (req/s)")
    for name, rs in rounds.items():
        s = {
            "rps": median_or_none([r["rps"] for r in rs]),
            "p50_ms": median_or_none([r["p50_ms"] for r in rs]),
            "p99_ms": median_or_none([r["p99_ms"] for r in rs]),
            "non_2xx": sum(r["non_2xx"] for r in rs),
            "socket_errors": sum(r["socket_errors"] for r in rs),
            "per_round_rps": [r["rps"] for r in rs],
        }
        summary[name] = s
        fmt = lambda v: f"{v:8.2f}" if v is not None else "       -"
        print(f"{name:34s} {s['rps']:>10.0f} {fmt(s['p50_ms'])} {fmt(s['p99_ms'])}   "
              + " ".join(f"{x:.0f}" for x in s["per_round_rps"])
              + (f"   non-2xx {s['non_2xx']}" if s["non_2xx"] else "")
              + (f"   socket errors {s['socket_errors']}" if s["socket_errors"] else ""))

    def paired(a, b, key="rps"):
        """Median over rounds of rounds[a][i][key] / rounds[b][i][key]."""
        if a not in rounds or b not in rounds:
            return None
        ratios = [x[key] / y[key] for x, y in zip(rounds[a], rounds[b])
                  if x.get(key) and y.get(key)]
        return statistics.median(ratios) if ratios else None

    # The framework's cost and ours as separate figures: throughput ratios per round, and
    # the ratio of instructions per request (a cost: below 1 means fewer instructions).
    cg = results.get("instructions_per_request") or {}
    floor = {}
    print()
    print(f"{'floor':36s} {'req/s ratio':>12s} {'rounds':>22s} {'instr/req ratio':>16s} "
          f"{'instr/req more':>15s}")
    for name, a, b in (("bare / nginx proxy_pass", "bare pingora", "nginx proxy_pass"),
                       ("unprotected / bare", "tollgate unprotected", "bare pingora"),
                       ("protected / bare", "tollgate protected", "bare pingora"),
                       ("protected / nginx proxy_pass", "tollgate protected", "nginx proxy_pass"),
                       ("bare, lowercase headers / nginx", "bare pingora, lowercase headers",
                        "nginx proxy_pass"),
                       ("protected, lowercase / bare, lowercase",
                        "tollgate protected, lowercase headers",
                        "bare pingora, lowercase headers"),
                       ("protected, lowercase headers / nginx proxy_pass",
                        "tollgate protected, lowercase headers", "nginx proxy_pass")):
        rps = paired(a, b)
        per_round = [x["rps"] / y["rps"] for x, y in zip(rounds.get(a, []), rounds.get(b, []))
                     if x.get("rps") and y.get("rps")]
        instr = cg[a] / cg[b] if cg.get(a) and cg.get(b) else None
        more = cg[a] - cg[b] if cg.get(a) and cg.get(b) else None
        floor[name] = {"rps_ratio": rps, "rps_ratio_per_round": per_round,
                       "instructions_ratio": instr, "instructions_more": more}
        fmt = lambda v: f"{v:.3f}" if v is not None else "-"
        shown_rounds = " ".join(f"{x:.2f}" for x in per_round)
        print(f"{name:36s} {fmt(rps):>12s} {shown_rounds:>22s} {fmt(instr):>16s} "
              f"{(f'{more / 1000:+.1f} k' if more is not None else '-'):>15s}")

    more = floor["protected / bare"]["instructions_more"]
    more_lc = floor["protected, lowercase / bare, lowercase"]["instructions_more"]
    checks = [
        ("bare pingora (instructions/req)", cg.get("bare pingora"), "<=", 55000),
        ("bare, lowercase headers (instructions/req)", cg.get("bare pingora, lowercase headers"),
         "<=", 55000),
        ("protected − bare, lowercase (instr/req)", more_lc, "<=", 8000),
        ("protected, lowercase / nginx proxy_pass",
         paired("tollgate protected, lowercase headers", "nginx proxy_pass"), ">=", 0.70),
        ("unprotected / bare", paired("tollgate unprotected", "bare pingora"), ">=", 0.95),
        ("protected / bare", paired("tollgate protected", "bare pingora"), ">=", 0.93),
        ("protected − bare (instructions/req)", more, "<=", 8000),
        ("protected / nginx proxy_pass", paired("tollgate protected", "nginx proxy_pass"),
         ">=", 0.70),
        ("protected / unprotected", paired("tollgate protected", "tollgate unprotected"),
         ">=", 0.95),
        ("protected / haproxy jwt_verify", paired("tollgate protected", "haproxy jwt_verify"),
         ">=", 2.5),
        ("protected / nginx + njs WebCrypto",
         paired("tollgate protected", "nginx + njs WebCrypto"), ">=", 2.5),
        ("p99 protected / p99 nginx", paired("tollgate protected", "nginx proxy_pass", "p99_ms"),
         "<=", 2.0),
        ("protected 10k routes / 10 routes",
         paired("tollgate protected, 10k routes", "tollgate protected"), ">=", 0.95),
        ("issue cc JWT (tokens/s)", summary.get("issue cc JWT", {}).get("rps"), ">=", 15000),
        ("issue cc opaque (tokens/s)", summary.get("issue cc opaque", {}).get("rps"), ">=", 15000),
        ("introspect JWT (/s)", summary.get("introspect JWT", {}).get("rps"), ">=", 30000),
        ("introspect opaque (/s)", summary.get("introspect opaque", {}).get("rps"), ">=", 30000),
        ("refresh, durable (/s)", summary.get("refresh (durable)", {}).get("rps"), ">=", 5000),
    ]
    mem = results.get("cache_memory")
    if mem:
        checks.append(("memory per cached token, RSS (B)", mem["rss_bytes_per_token"], "<=", 400))
    conn = results.get("connections_10k")
    if conn:
        checks.append(("10,000 connections: errors", conn["non_2xx"] + conn["socket_errors"],
                       "<=", 0))
    print()
    print(f"{'target':36s} {'measured':>10s} {'target':>10s}")
    table = []
    for name, value, op, target in checks:
        if value is None:
            continue
        ok = value >= target if op == ">=" else value <= target
        shown = f"{value:.3f}" if isinstance(value, float) and value < 100 else f"{value:.0f}"
        print(f"{name:36s} {shown:>10s} {op + ' ' + str(target):>10s}  {'ok' if ok else 'MISSED'}")
        table.append({"name": name, "value": value, "op": op, "target": target, "ok": ok})
    if cg:
        print()
        for name, v in cg.items():
            print(f"instructions/request {name:26s} {v / 1000:8.1f} k")

    for rs in rounds.values():
        for r in rs:
            r.pop("raw", None)
    if conn:
        conn.pop("raw", None)
    doc = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "setup": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "connections": args.connections,
            "proxy_cpu": PROXY_CPU,
            "load_cpu": LOAD_CPU,
            "cpus": os.cpu_count(),
            "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
        },
        "summary": summary,
        "floor": floor,
        "targets": table,
        "rounds": rounds,
        "connections_10k": conn,
        "instructions_per_request": cg or None,
        "cache_memory": mem,
    }
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for name in (f"results-{stamp}.json", "latest.json"):
        with open(os.path.join(WORK, name), "w") as f:
            json.dump(doc, f, indent=2)
    print(f"\nJSON: {os.path.join(WORK, f'results-{stamp}.json')}")


if __name__ == "__main__":
    sys.exit(main())
