#!/usr/bin/env python3
"""TLS: tollgate against nginx over TLS 1.3, same run, interleaved rounds (tollgate, nginx,
tollgate, nginx ...), ratios taken per round and then their median.

  1. new TLS 1.3 handshakes per second, full (no resumption) and resumed (session tickets):
     `openssl s_time -new` / `-reuse`, several processes at once; each connection makes one
     HTTP/1.0 request (GET /open/x, proxied to the upstream) and closes. s_time marks every
     connection as resumed or not (SSL_session_reused) and the counts are printed: none
     may be resumed in "full", all in "resumed"; each server is also checked once with
     `s_client -sess_out/-sess_in`. Not wrk or h2load with `Connection: close`: both put
     the last session back on their next connection (nginx's $ssl_session_reused says
     `r` for all but the first), so they cannot measure full handshakes.
  2. requests per second over TLS keep-alive, HTTP/1.1 (wrk -c50): tollgate's protected
     route (a Bearer JWT validated) against nginx proxy_pass; and the same over cleartext
     (harness.py's protected / nginx proxy_pass ratio), same run.
  3. HTTP/2 over TLS, many streams per connection (h2load -c10 -m32): the same two routes.

Both servers run one worker on core 0, with the same ECDSA P-256 certificate (made here with
openssl), the same TLS 1.3 cipher suites, the same upstream (harness.py's nginx on core 1,
returning a small 200); the clients run on core 1. A full TLS 1.3 handshake costs the client
more than the server (it verifies the ECDSA signature the server makes, and does the same
X25519 work), so one client core is expected to be the bottleneck of the handshake figures:
each row therefore also shows the server's CPU time per connection (from /proc, so it holds
however busy the server was), the server's and the client's share of a core, and how busy
core 1 was. `handshakes per server CPU second` is the figure to compare when the client
bounds the rate. Optionally (perf installed and allowed) a top-5 profile of each server
during full handshakes.

Run through `scripts/bench.sh --tls [--rounds N --duration S]`. Results: a table on stdout,
JSON in target/bench/tls-latest.json.
"""

import argparse
import datetime
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.WORK = os.path.join(h.WORK, "tls")
RESULTS = os.path.join(h.ROOT, "target", "bench", "tls-latest.json")
# The TLS 1.3 suites of tollgate (rust-openssl's mozilla_intermediate_v5, which Pingora's
# TlsSettings::intermediate uses) and the TLS 1.2 list of the same profile, given to nginx.
SUITES_13 = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
CIPHERS_12 = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
              "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")
HS_PATH = "/open/x"   # what each handshake connection asks for (auth: none, proxied)
CLIENTS = []          # load generators running now: killed if we stop early


def nginx_conf(plain, tls, up, cert, key):
    """harness.py's nginx proxy_pass, plus a TLS listener (HTTP/2 by ALPN) on `tls`."""
    conf = h.nginx_proxy_conf(plain, up, "nginx")
    listen = f"listen 127.0.0.1:{plain} backlog=65535;"
    if listen not in conf:
        raise SystemExit("harness.nginx_proxy_conf changed: no plain listen line to extend")
    return conf.replace(listen, f"""{listen}
    listen 127.0.0.1:{tls} ssl http2 backlog=65535;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers {CIPHERS_12};
    ssl_conf_command Ciphersuites {SUITES_13};
    ssl_session_tickets on;""")


def tollgate_conf(plain, tls, metrics, upstreams, cert, key):
    """harness.py's gateway config with a TLS listener (tls.http2 on) before the plain one."""
    conf = h.tollgate_conf("tollgate", plain, metrics, upstreams)
    return conf.replace("listen:\n", f"listen:\n  - addr: 127.0.0.1:{tls}\n"
                                     f"    tls: {{ cert: {cert}, key: {key}, http2: true }}\n", 1)


def tollgate_upstreams(up, secret_hash):
    # s_time's request is `GET <path> HTTP/1.0` with no Host; with the default
    # `host_header: pass` the gateway forwards it without a Host header and the upstream
    # answers 400, so the open route names the upstream (nginx sends Host: $proxy_host).
    text = h.tollgate_upstreams(up, secret_hash)
    old = f'upstream: {{ servers: ["127.0.0.1:{up}"] }}, auth: none'
    if old not in text:
        raise SystemExit("harness.tollgate_upstreams changed: no open route to adjust")
    return text.replace(old, f'upstream: {{ servers: ["127.0.0.1:{up}"], '
                             f'host_header: upstream }}, auth: none')


def tls_request(port, request, alpn=None, timeout=10):
    """One request over a fresh TLS connection: (status line, version, cipher, ALPN)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(request.encode())
            data = b""
            while request and b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return (data.split(b"\r\n")[0].decode(errors="replace"), s.version(),
                    s.cipher()[0], s.selected_alpn_protocol())


def wait_tls(port, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return tls_request(port, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"no TLS answer on 127.0.0.1:{port} after {timeout:.0f}s")
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------
# CPU accounting: the server's processes, this script's children (the clients), core 1.

TICK = os.sysconf("SC_CLK_TCK")


def tree(pid):
    """`pid` and its children (nginx: master and worker)."""
    pids = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pids += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return pids


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])   # utime + stime, all threads
        except OSError:
            pass
    return total / TICK


def core_times(core):
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:]]
                return sum(v) - v[3] - v[4], sum(v)   # busy (all but idle, iowait), total
    return 0, 1


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measured(server_pid, upstream_pid, fn):
    """Run `fn` and add to its result the CPU over it of the server, of the clients (this
    script's children), of the upstream, and how busy each core was (anything on it)."""
    pids, up = tree(server_pid), tree(upstream_pid)
    s0, c0, u0 = cpu_seconds(pids), children_cpu(), cpu_seconds(up)
    k0, j0, t0 = core_times(h.PROXY_CPU), core_times(h.LOAD_CPU), time.monotonic()
    res = fn()
    res.pop("raw", None)   # wrk's own output
    wall = time.monotonic() - t0
    s1, c1, u1 = cpu_seconds(pids), children_cpu(), cpu_seconds(up)
    k1, j1 = core_times(h.PROXY_CPU), core_times(h.LOAD_CPU)
    n = res.get("connections") or res.get("requests") or 0
    res.update(wall_s=wall, server_cpu_s=s1 - s0, client_cpu_s=c1 - c0,
               server_core=(s1 - s0) / wall, client_core=(c1 - c0) / wall,
               upstream_core=(u1 - u0) / wall,
               core0_busy=(k1[0] - k0[0]) / max(1, k1[1] - k0[1]),
               core1_busy=(j1[0] - j0[0]) / max(1, j1[1] - j0[1]),
               server_us_per_unit=1e6 * (s1 - s0) / n if n else None,
               client_us_per_unit=1e6 * (c1 - c0) / n if n else None,
               per_server_cpu_s=n / (s1 - s0) if s1 > s0 else None)
    return res


# ---------------------------------------------------------------------------------------
# Clients


def start(argv):
    p = subprocess.Popen(["taskset", "-c", h.LOAD_CPU, *argv], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    CLIENTS.append(p)
    return p


def finish(p, timeout):
    try:
        out = p.communicate(timeout=timeout)[0]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        CLIENTS.remove(p)
    return out


def s_time(port, mode, duration, clients):
    """`clients` s_time processes at once, each opening connections one after another for
    `duration` s (a full or a resumed handshake, then GET HS_PATH over HTTP/1.0)."""
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", f"-{mode}", "-www", HS_PATH,
            "-time", str(duration), "-tls1_3", "-no-CAfile", "-no-CApath", "-no-CAstore"]
    t0 = time.monotonic()
    procs = [start(argv) for _ in range(clients)]
    outs = [finish(p, duration + 60) for p in procs]
    wall = time.monotonic() - t0
    total, marks = 0, ""
    for out in outs:
        m = re.search(r"(\d+) connections in [\d.]+s", out)
        if not m:
            raise SystemExit(f"cannot read s_time's output:\n{out[-2000:]}")
        total += int(m.group(1))
        # One character per connection: `r` resumed (SSL_session_reused), `*` a new session.
        marks += "".join(re.findall(r"^[*rt3]+$", out, re.M))
    bytes_read = sum(int(x) for out in outs
                     for x in re.findall(r"(\d+) bytes read per connection", out))
    return {"rps": total / wall, "connections": total, "resumed": marks.count("r"),
            "marked": len(marks), "bytes_per_conn": bytes_read / max(1, len(outs))}


def h2load(url, duration, conns, streams, headers):
    argv = ["h2load", "-t1", f"-c{conns}", f"-m{streams}", "-D", str(duration)]
    for hd in headers:
        argv += ["-H", hd]
    out = finish(start([*argv, url]), duration + 60)
    rps = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    reqs = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\s", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    if not (rps and reqs and codes):
        raise SystemExit(f"cannot read h2load's output:\n{out[-2000:]}")
    return {"rps": float(rps.group(1)), "requests": int(reqs.group(4)),
            "non_2xx": int(reqs.group(3)) - int(codes.group(1)),
            "socket_errors": int(reqs.group(6)) + int(reqs.group(7)),
            "mean_ms": float(mean.group(1)) * h.UNITS[mean.group(2)] if mean else None,
            "protocol": proto.group(1) if proto else None}


# ---------------------------------------------------------------------------------------
# What each server does with TLS, and which library it uses


def s_client(port):
    """One full handshake (session saved), then one with the saved session: what was
    negotiated, how many tickets came, their lifetime, and whether resumption worked."""
    sess = os.path.join(h.WORK, f"session-{port}.pem")
    base = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3", "-ign_eof"]
    req = f"GET {HS_PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    out = [subprocess.run([*base, *sess_arg], input=req, capture_output=True, text=True,
                          timeout=30).stdout for sess_arg in (["-sess_out", sess],
                                                              ["-sess_in", sess])]

    def grab(pattern, text=out[0]):
        m = re.search(pattern, text, re.M)
        return m.group(1).strip() if m else None
    return {
        "first": grab(r"^((?:New|Reused), [^\n]*)"),
        "group": grab(r"Server Temp Key: ([^\n]*)"),
        "alpn_offered_h2": tls_request(port, "", alpn=["h2", "http/1.1"])[3],
        "tickets": out[0].count("Post-Handshake New Session Ticket arrived"),
        "ticket_lifetime_s": int(grab(r"ticket lifetime hint: (\d+)") or 0),
        "second": grab(r"^((?:New|Reused), [^\n]*)", out[1]),
        "resumed": bool(re.search(r"^Reused, TLSv1\.3", out[1], re.M)),
    }


def ssl_libs(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return ", ".join(x.split()[0] for x in out.splitlines() if "libssl" in x or "libcrypto" in x)


def libraries():
    info = {"client": subprocess.run(["openssl", "version"], capture_output=True,
                                     text=True).stdout.strip()}
    v = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr
    m, ver = re.search(r"built with (OpenSSL [^\n]*)", v), re.search(r"version: (\S+)", v)
    info["nginx"] = (f"{ver.group(1) if ver else 'nginx'}, {m.group(1) if m else '?'}; "
                     f"dynamically linked: {ssl_libs(shutil.which('nginx')) or 'none'}")
    with open(h.TOLLGATE, "rb") as f:
        found = re.search(rb"OpenSSL (\d+\.\d+\.\d+[a-z]?(?:-\w+)? +\d+ \w+ \d{4})", f.read())
    with open(os.path.join(h.ROOT, "Cargo.lock")) as f:
        src = re.search(r'name = "openssl-src"\nversion = "([^"]+)"', f.read())
    with open(os.path.join(h.ROOT, "Cargo.toml")) as f:
        pingora = re.search(r"^pingora = (.*)$", f.read(), re.M)
    dyn = ssl_libs(h.TOLLGATE)
    info["tollgate"] = (
        f"Pingora ({pingora.group(1) if pingora else '?'}), "
        f"OpenSSL {found.group(1).decode() if found else '? (no version string in binary)'}; "
        + (f"dynamically linked: {dyn}" if dyn else "no libssl/libcrypto in ldd: statically linked")
        + (f"; Cargo.lock has openssl-src {src.group(1)} (openssl-sys `vendored`, "
           "which pingora-openssl turns on)" if src else ""))
    return info


def profile(name, pids, port, duration, clients):
    """Top of `perf record` over the server's processes during full handshakes."""
    if not shutil.which("perf"):
        return None
    out = os.path.join(h.WORK, f"perf-{name}.data")
    perf = start(["perf", "record", "-F", "999", "-o", out, "-p", ",".join(map(str, pids)),
                  "--", "sleep", str(duration)])
    deadline = time.monotonic() + 10
    while not os.path.exists(out) and perf.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)   # perf creates its file once attached
    s_time(port, "new", duration, clients)
    log = finish(perf, 60)
    if perf.returncode != 0 or not os.path.exists(out):
        return {"error": log.strip()[-300:]}
    result = {}
    for key in ("dso,symbol", "dso"):
        rep = subprocess.run(["perf", "report", "-i", out, "--stdio", "--no-children",
                              "--sort", key], capture_output=True, text=True).stdout
        rows = [(float(p), re.sub(r"\s+", " ", re.sub(r"(\s+-)+$", "", s))[:110])
                for p, s in re.findall(r"^\s+([\d.]+)%\s+(.+?)\s*$", rep, re.M)]
        result[key] = rows[:5]
        if key == "dso,symbol":
            result["user space"] = [r for r in rows if "[k]" not in r[1]][:5]
    return result


# ---------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6, help="seconds per scenario per round")
    ap.add_argument("--connections", type=int, default=50, help="wrk, HTTP/1.1 keep-alive")
    ap.add_argument("--h2-connections", type=int, default=10)
    ap.add_argument("--h2-streams", type=int, default=32)
    ap.add_argument("--handshake-clients", type=int, default=4,
                    help="s_time processes at once (each one connection at a time)")
    ap.add_argument("--skip-profile", action="store_true")
    args = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: one for the servers, one for the clients")
    for tool in ("nginx", "openssl", "wrk", "h2load", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (scripts/install-deps.sh --bench)")
    h.raise_nofile()
    shutil.rmtree(h.WORK, ignore_errors=True)
    os.makedirs(os.path.join(h.WORK, "nginx-tmp"))
    # A SIGTERM (or SIGINT) unwinds through the `finally` below like an error does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    procs = []
    try:
        doc = run(args, procs)
    finally:
        for p in list(CLIENTS):
            if p.poll() is None:
                p.kill()
                p.wait()
        for p in reversed(procs):
            p.stop()
    with open(RESULTS, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"\nJSON: {RESULTS}")


def run(args, procs):
    ports = {k: h.free_port() for k in ("up", "ng", "ng_tls", "tg", "tg_tls", "tg_m")}
    up = ports["up"]
    h.write("upstream.conf", h.nginx_upstream_conf(up))
    h.start_nginx_upstream(procs)
    h.wait_http(up)
    cert, key = h.make_cert(h.WORK)
    h.es256_key()
    secret_hash = h.bench_secret_hash()

    h.write("nginx.conf", nginx_conf(ports["ng"], ports["ng_tls"], up, cert, key))
    nginx = h.Proc("nginx", ["nginx", "-p", h.WORK, "-e", "stderr", "-c",
                             os.path.join(h.WORK, "nginx.conf")], h.PROXY_CPU)
    procs.append(nginx)
    upstreams = h.write("upstreams.yaml", tollgate_upstreams(up, secret_hash))
    conf = h.write("tollgate.yaml", tollgate_conf(ports["tg"], ports["tg_tls"], ports["tg_m"],
                                                  upstreams, cert, key))
    tollgate = h.Proc("tollgate", [h.TOLLGATE, "-c", conf], h.PROXY_CPU)
    procs.append(tollgate)
    for port in (ports["ng"], ports["tg"]):
        h.wait_http(port)
    for port in (ports["ng_tls"], ports["tg_tls"]):
        wait_tls(port)

    jwt = h.post_form(ports["tg"], "/credential/jwt", "grant_type=client_credentials",
                      f"bench:{h.SECRET}")["access_token"]
    bearer = f"Authorization: Bearer {jwt}"
    servers = {"tollgate": (tollgate.p.pid, ports["tg"], ports["tg_tls"]),
               "nginx": (nginx.p.pid, ports["ng"], ports["ng_tls"])}
    # Every request the rounds make answers 200 on both, before anything is measured.
    for name, (_, plain, tls) in servers.items():
        for req in (f"GET {HS_PATH} HTTP/1.0\r\n\r\n",
                    f"GET /api/x HTTP/1.1\r\nHost: localhost\r\n{bearer}\r\n\r\n"):
            status = tls_request(tls, req)[0]
            if " 200 " not in status + " ":
                raise SystemExit(f"{name}: {req.splitlines()[0]!r} over TLS answered {status!r}")

    libs = libraries()
    tls_info = {name: s_client(tls) for name, (_, _, tls) in servers.items()}
    print(f"client (s_time, wrk, h2load): {libs['client']}")
    print(f"nginx:    {libs['nginx']}")
    print(f"tollgate: {libs['tollgate']}")
    for name, t in tls_info.items():
        print(f"{name:9s} {t['first']}, {t['group']}, ALPN (h2 offered) {t['alpn_offered_h2']}, "
              f"{t['tickets']} tickets "
              f"(lifetime hint {t['ticket_lifetime_s']} s); with the saved session: "
              f"{t['second']} -> {'RESUMED' if t['resumed'] else 'NOT resumed'}")

    d, hc = args.duration, args.handshake_clients
    up_pid = procs[0].p.pid

    h2 = f"HTTP/2, TLS, c{args.h2_connections} m{args.h2_streams}"
    clients = {   # scenario -> (plain port, TLS port, seconds) -> result
        "full handshakes": lambda plain, tls, t: s_time(tls, "new", t, hc),
        "resumed handshakes": lambda plain, tls, t: s_time(tls, "reuse", t, hc),
        "HTTP/1.1 keep-alive, TLS": lambda plain, tls, t: h.wrk(
            f"https://127.0.0.1:{tls}/api/x", args.connections, t, headers=[bearer]),
        "HTTP/1.1 keep-alive, cleartext": lambda plain, tls, t: h.wrk(
            f"http://127.0.0.1:{plain}/api/x", args.connections, t, headers=[bearer]),
        h2: lambda plain, tls, t: h2load(f"https://127.0.0.1:{tls}/api/x", t,
                                         args.h2_connections, args.h2_streams, [bearer]),
    }

    def scenario(kind, server):
        pid, plain, tls = servers[server]
        return lambda t: measured(pid, up_pid, lambda: clients[kind](plain, tls, t))

    kinds = list(clients)
    order = [(k, s) for k in kinds for s in ("tollgate", "nginx")]
    for k, s in order:   # warm up: connection pools, caches, first-time allocations
        scenario(k, s)(1)
    rounds = {f"{k} | {s}": [] for k, s in order}
    for r in range(args.rounds):
        for k, s in order:
            res = scenario(k, s)(d)
            rounds[f"{k} | {s}"].append(res)
            print(f"round {r + 1} {k:32s} {s:8s} " + describe(res), flush=True)

    summary = summarize(rounds, kinds)
    profiles = {}
    if not args.skip_profile:
        for name, (pid, _, tls) in servers.items():
            profiles[name] = profile(name, tree(pid), tls, d, hc)
        print_profiles(profiles)
    return {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "setup": {"rounds": args.rounds, "duration_s": d, "handshake_clients": hc,
                  "wrk_connections": args.connections, "h2_connections": args.h2_connections,
                  "h2_streams": args.h2_streams, "server_cpu": h.PROXY_CPU,
                  "client_cpu": h.LOAD_CPU, "tollgate_bin": h.TOLLGATE,
                  "suites_tls13": SUITES_13, "handshake_request": f"GET {HS_PATH} HTTP/1.0",
                  "commit": subprocess.run(["git", "-C", h.ROOT, "rev-parse", "--short", "HEAD"],
                                           capture_output=True, text=True).stdout.strip()},
        "libraries": libs, "negotiated": tls_info, "summary": summary, "rounds": rounds,
        "profile_full_handshakes": profiles,
    }


def describe(res):
    unit = "conn/s" if "connections" in res else "req/s"
    f = lambda v: f"{v:.0f}" if v is not None else "-"   # noqa: E731
    extra = ""
    if "marked" in res:
        extra = f"  resumed {res['resumed']}/{res['marked']}"
    if res.get("p99_ms") is not None:
        extra += f"  p99 {res['p99_ms']:.2f} ms"
    if res.get("mean_ms") is not None:
        extra += f"  mean {res['mean_ms']:.2f} ms"
    if res.get("protocol") not in (None, "h2"):
        extra += f"  PROTOCOL {res['protocol']}"
    if res.get("non_2xx") or res.get("socket_errors"):
        extra += f"  non-2xx {res.get('non_2xx', 0)} errors {res.get('socket_errors', 0)}"
    return (f"{res['rps']:>8.0f} {unit:6s} CPU us each: server {f(res['server_us_per_unit']):>5s}"
            f" client {f(res['client_us_per_unit']):>5s} | core {h.PROXY_CPU}: server "
            f"{100 * res['server_core']:3.0f}% (busy {100 * res['core0_busy']:3.0f}%) | core "
            f"{h.LOAD_CPU}: client {100 * res['client_core']:3.0f}% upstream "
            f"{100 * res['upstream_core']:3.0f}% (busy {100 * res['core1_busy']:3.0f}%){extra}")


def bound(rs):
    """What limited a run. The server alone on core 0 and the client alone on core 1 would
    make the one needing more CPU per connection or request the bottleneck; on a shared
    machine other work on the cores can limit both first."""
    med = lambda key: statistics.median(r[key] for r in rs)   # noqa: E731
    if med("server_core") >= 0.9:
        return "server-bound"
    heavier = med("client_cpu_s") > med("server_cpu_s")
    if heavier and med("core1_busy") >= 0.9 and med("client_core") >= 0.6:
        return "CLIENT-BOUND"
    return (f"shared: server had {med('server_core'):.0%} of core {h.PROXY_CPU} "
            f"(busy {med('core0_busy'):.0%}), client {med('client_core'):.0%} of core "
            f"{h.LOAD_CPU} (busy {med('core1_busy'):.0%})"
            + ("; the client needs more CPU each" if heavier else ""))


def summarize(rounds, kinds):
    summary = {}
    print()
    print(f"{'scenario':32s} {'tollgate':>9s} {'nginx':>9s} {'ratio':>6s} {'rounds':>16s}  "
          f"{'per server CPU s: tollgate':>26s} {'nginx':>7s} {'ratio':>6s}")
    for k in kinds:
        t, n = rounds[f"{k} | tollgate"], rounds[f"{k} | nginx"]
        per_round = [a["rps"] / b["rps"] for a, b in zip(t, n) if a["rps"] and b["rps"]]
        eff = [a["per_server_cpu_s"] / b["per_server_cpu_s"] for a, b in zip(t, n)
               if a["per_server_cpu_s"] and b["per_server_cpu_s"]]
        s = {
            "tollgate_rps": h.median_or_none([r["rps"] for r in t]),
            "nginx_rps": h.median_or_none([r["rps"] for r in n]),
            "ratio": h.median_or_none(per_round), "ratio_per_round": per_round,
            "tollgate_per_server_cpu_s": h.median_or_none([r["per_server_cpu_s"] for r in t]),
            "nginx_per_server_cpu_s": h.median_or_none([r["per_server_cpu_s"] for r in n]),
            "cpu_efficiency_ratio": h.median_or_none(eff), "cpu_efficiency_per_round": eff,
            "tollgate_bound": bound(t), "nginx_bound": bound(n),
            "client_over_server_cpu": {
                x: statistics.median(r["client_cpu_s"] / r["server_cpu_s"] for r in rs
                                     if r["server_cpu_s"] > 0) for x, rs in
                (("tollgate", t), ("nginx", n))},
        }
        if "marked" in t[0]:
            s["resumed"] = {"tollgate": [sum(r["resumed"] for r in t), sum(r["marked"] for r in t)],
                            "nginx": [sum(r["resumed"] for r in n), sum(r["marked"] for r in n)]}
        summary[k] = s
        f = lambda v, p=0: f"{v:.{p}f}" if v is not None else "-"   # noqa: E731
        print(f"{k:32s} {f(s['tollgate_rps']):>9s} {f(s['nginx_rps']):>9s} "
              f"{f(s['ratio'], 3):>6s} {' '.join(f'{x:.2f}' for x in per_round):>16s}  "
              f"{f(s['tollgate_per_server_cpu_s']):>26s} {f(s['nginx_per_server_cpu_s']):>7s} "
              f"{f(s['cpu_efficiency_ratio'], 3):>6s}")
    print("\nratio: tollgate / nginx, median of per-round ratios (higher is better for "
          "tollgate). 'per server CPU s': connections or requests per second of the server's "
          "own CPU time, whatever limited the rate; it is the fair comparison when a run is "
          "client-bound.")
    for k in kinds:
        x, c = summary[k], summary[k]["client_over_server_cpu"]
        res = x.get("resumed")
        print(f"{k}: client CPU / server CPU per unit {c['tollgate']:.2f} (tollgate), "
              f"{c['nginx']:.2f} (nginx)" + (", so one client core is the bottleneck at best"
                                              if min(c.values()) > 1 else "")
              + (f"; resumed connections (s_time's marks) tollgate {res['tollgate'][0]}/"
                 f"{res['tollgate'][1]}, nginx {res['nginx'][0]}/{res['nginx'][1]}"
                 if res else "")
              + f"\n    bound by: tollgate {x['tollgate_bound']}; nginx {x['nginx_bound']}")
    return summary


def print_profiles(profiles):
    for name, p in profiles.items():
        print(f"\nperf, {name}, full handshakes (top 5, % of the server's samples):")
        if not p or "error" in p:
            print(f"  no profile: {(p or {}).get('error', 'perf is not installed')}")
            continue
        for pct, what in p["dso,symbol"]:
            print(f"  {pct:6.2f}%  {what}")
        print("  user space only:")
        for pct, what in p["user space"]:
            print(f"  {pct:6.2f}%  {what}")
        print("  by object: " + ", ".join(f"{what} {pct:.1f}%" for pct, what in p["dso"]))


if __name__ == "__main__":
    sys.exit(main())
