#!/usr/bin/env python3
"""A normal client's latency alone and during a slow-client attack, in interleaved rounds.

The normal client: wrk (keep-alive, --connections) on the protected route (JWT, scope
bench:read) with a valid token, and a latency probe issuing client_credentials tokens one
after another on one keep-alive connection (--issue-rate per second). The attack, from an
asyncio process of its own (this script with --attack-worker), started before the measured
window and kept up through it:

  - --slowloris connections (1,000): a request line and Host, then one header byte a
    second, never the blank line. Each should be closed by the gateway without an answer
    when server.client_header_timeout (here 10 s) has passed since accept;
  - --uploads slow uploads (100), half to the token endpoint, half through the proxy
    (/open/upload, to an upstream that answers once it has the whole body): the whole
    header with Content-Length: 100000, then four body bytes a second. Each should get
    408 and be closed when server.client_body_timeout (10 s) has passed
    (client_body_min_rate 500: four bytes a second never earn another second).

A connection the gateway closes is opened again at once, so the attacker keeps its
connections open all the time; the first ones are opened over --ramp seconds (default: the
header timeout), so that closes and reopenings are spread evenly rather than coming in
waves, and the measured window starts once they are all open. The attacker counts every
close by what it received (slowloris: nothing; uploads: 408) and how long the connection
lived; the gateway's tollgate_client_timeouts_total{phase}, tollgate_connections{listener}
and tollgate_connections_refused_total are read from its metrics listener at the end of
each attack round.

Rounds interleave (alone, attack, alone, attack …); the table shows medians of per-round
figures, and attack/alone ratios are taken per round, then their median. The exit status
is 1 when the normal client had an error or a slow connection ended otherwise than
expected (a slowloris answered, an upload not answered 408).

Run through `scripts/bench.sh --slow [--rounds 2 --duration 10]`.

Layout (2 cores): tollgate (1 thread) on core 0; wrk, the nginx upstream, the issuance
probe and the attacker on core 1. Results: a table on stdout, and JSON in
target/bench/slow/slow-<time>.json (and latest.json).
"""

import argparse
import asyncio
import base64
import collections
import datetime
import http.client
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.WORK = os.path.join(h.WORK, "slow")

# The gateway's slow-client settings for this scenario (stated in the output).
HEADER_TIMEOUT = 10
BODY_TIMEOUT = 10
BODY_MIN_RATE = 500
KEEPALIVE_TIMEOUT = 75       # the default, stated
MAX_CONNECTIONS = 10_000     # the default, stated
UPLOAD_LENGTH = 100_000
UPLOAD_PATHS = ("/credential/jwt", "/open/upload")


def raise_nofile(want=65536):
    """As many open files as allowed, up to `want` (children inherit the limit)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = want if hard == resource.RLIM_INFINITY else min(hard, want)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


# ---------------------------------------------------------------------------------------
# The attacker (a process of its own, on the load core)


class Attack:
    def __init__(self, args):
        self.args = args
        self.open = collections.Counter()
        self.opened = collections.Counter()
        self.connect_errors = collections.Counter()
        self.closed = {"slowloris": collections.Counter(), "upload": collections.Counter()}
        self.closes = []            # [kind, outcome, wall time of the close, lifetime s]
        self.started_slots = 0
        self.slots = args.slowloris + args.uploads
        self.stop = None

    def snapshot(self, final=False):
        ru = resource.getrusage(resource.RUSAGE_SELF)
        doc = {
            "t": time.time(),
            "pid": os.getpid(),
            "ramp_done": self.started_slots >= self.slots,
            "open": dict(self.open),
            "open_total": sum(self.open.values()),
            "opened": dict(self.opened),
            "connect_errors": dict(self.connect_errors),
            "closed": {k: dict(v) for k, v in self.closed.items()},
            "cpu_s": ru.ru_utime + ru.ru_stime,
            "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            "final": final,
        }
        if final:
            doc["closes"] = self.closes
        tmp = self.args.status + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, self.args.status)

    async def reporter(self):
        while True:
            self.snapshot()
            await asyncio.sleep(0.5)

    @staticmethod
    def outcome(got, reset):
        if got:
            m = re.match(rb"HTTP/1\.[01] (\d{3})", got)
            return f"answered {m.group(1).decode()}" if m else "answered garbage"
        return "reset" if reset else "nothing"

    async def hold(self, kind, head, drip, every, reader, writer):
        """Send `head`, then `drip` a piece every `every` seconds (cycling) until the
        gateway closes the connection; what it sent before closing is the outcome."""
        loop = asyncio.get_running_loop()
        got = b""
        writer.write(head)
        read = asyncio.ensure_future(reader.read(4096))
        next_at = loop.time() + every
        k = 0
        try:
            while True:
                done, _ = await asyncio.wait({read}, timeout=max(0.0, next_at - loop.time()))
                if done:
                    try:
                        data = read.result()
                    except OSError:
                        return self.outcome(got, True)
                    if not data:
                        return self.outcome(got, False)
                    got += data
                    read = asyncio.ensure_future(reader.read(4096))
                    continue
                try:
                    writer.write(drip[k % len(drip)])
                    await writer.drain()
                except OSError:
                    # Refused by a reset: whatever came before it is still to be read.
                    try:
                        data = await asyncio.wait_for(read, 1.0)
                        got += data or b""
                    except (OSError, asyncio.TimeoutError):
                        pass
                    return self.outcome(got, True)
                k += 1
                next_at += every
        finally:
            read.cancel()

    async def slot(self, kind, i, delay):
        loop = asyncio.get_running_loop()
        await asyncio.sleep(delay)
        self.started_slots += 1
        n = 0
        host = "127.0.0.1"
        while True:
            if kind == "slowloris":
                head = (f"GET /api/slow/{i}/{n} HTTP/1.1\r\nHost: tollgate.bench\r\n"
                        "User-Agent: slowloris\r\n").encode()
                line = b"X-Slowloris: " + b"a" * 48 + b"\r\n"
                drip = [line[j:j + 1] for j in range(len(line))]      # one byte a second
                every = 1.0
            else:
                path = UPLOAD_PATHS[i % len(UPLOAD_PATHS)]
                head = (f"POST {path} HTTP/1.1\r\nHost: tollgate.bench\r\n"
                        "Content-Type: application/x-www-form-urlencoded\r\n"
                        f"Content-Length: {UPLOAD_LENGTH}\r\n\r\n").encode()
                drip = [b"aaaa"]                                     # four bytes a second
                every = 1.0
            try:
                reader, writer = await asyncio.open_connection(host, self.args.port)
            except OSError as e:
                self.connect_errors[f"{kind}: {type(e).__name__}"] += 1
                await asyncio.sleep(0.5)
                continue
            opened_at = loop.time()
            self.open[kind] += 1
            self.opened[kind] += 1
            try:
                outcome = await self.hold(kind, head, drip, every, reader, writer)
            finally:
                self.open[kind] -= 1
                writer.close()
            self.closed[kind][outcome] += 1
            self.closes.append([kind, outcome, round(time.time(), 3),
                                round(loop.time() - opened_at, 3)])
            n += 1

    async def main(self):
        loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        a = self.args
        tasks = [asyncio.ensure_future(self.reporter())]
        for kind, n in (("slowloris", a.slowloris), ("upload", a.uploads)):
            tasks += [asyncio.ensure_future(self.slot(kind, i, i * a.ramp / n))
                      for i in range(n)]
        await self.stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.snapshot(final=True)


def attack_worker(argv):
    ap = argparse.ArgumentParser(prog="slow.py --attack-worker")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--status", required=True)
    ap.add_argument("--slowloris", type=int, default=1000)
    ap.add_argument("--uploads", type=int, default=100)
    ap.add_argument("--ramp", type=float, default=HEADER_TIMEOUT)
    args = ap.parse_args(argv)
    raise_nofile()
    asyncio.run(Attack(args).main())
    return 0


# ---------------------------------------------------------------------------------------
# The gateway and the normal client


def gateway_conf(port, metrics_port, upstreams_file):
    state = os.path.join(h.WORK, "tollgate-state")
    os.makedirs(state, exist_ok=True)
    return f"""
listen:
  - addr: 127.0.0.1:{port}
    max_connections: {MAX_CONNECTIONS}
metrics:
  listen: 127.0.0.1:{metrics_port}
issuer: {h.ISSUER}
upstreams_file: {upstreams_file}
state_dir: {state}
server:
  threads: 1
  grace_period: 0s
  graceful_shutdown_timeout: 1s
  client_header_timeout: {HEADER_TIMEOUT}s
  client_body_timeout: {BODY_TIMEOUT}s
  client_body_min_rate: {BODY_MIN_RATE}
  keepalive_timeout: {KEEPALIVE_TIMEOUT}s
tokens:
  signing_key: {{ file: {h.WORK}/signing-key.pem, algorithm: ES256, kid: bench }}
store:
  sync: full
log:
  level: warn
  access_log: false
"""


def upstream_conf(port):
    """The harness's nginx upstream, plus /open/upload answered only once the whole body
    has come: nginx reads a request body to its end before proxying it (to itself here),
    as an application that reads its body would. (`return 200` alone answers at once, and
    the gateway then passes that 200 on before the body deadline can answer 408.)"""
    conf = h.nginx_upstream_conf(port)
    location = "    location / {"
    assert location in conf, "the harness's upstream config changed"
    return conf.replace(location, f"    location /open/upload {{ proxy_pass "
                                  f"http://127.0.0.1:{port}/uploaded; }}\n{location}", 1)


def gateway_metrics(metrics_port):
    """The slow-client series of the gateway, by full series name."""
    wanted = ("tollgate_client_timeouts_total", "tollgate_connections",
              "tollgate_connections_refused_total")
    return {k: v for k, v in h.scrape_metrics(metrics_port).items()
            if k.split("{")[0] in wanted}


def series(metrics, name, **labels):
    return sum(v for k, v in metrics.items()
               if k.partition("{")[0] == name
               and all(f'{lk}="{lv}"' in k for lk, lv in labels.items()))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_times():
    """(busy, total) jiffies of each core, from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                idle = v[3] + v[4]          # idle + iowait
                out[m.group(1)] = (sum(v[:8]) - idle, sum(v[:8]))
    return out


def core_busy(before, after):
    """Busy share of each core between two core_times()."""
    return {c: (after[c][0] - before[c][0]) / max(1, after[c][1] - before[c][1])
            for c in after if c in before}


def open_file_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return None


def percentile(xs, p):
    """Nearest rank."""
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, -(-len(xs) * p // 100) - 1))]


def wrk_max_ms(raw):
    m = re.search(r"^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\s", raw, re.M)
    return float(m.group(1)) * h.UNITS[m.group(2)] if m else None


class IssueProbe(threading.Thread):
    """client_credentials tokens one after another on one keep-alive connection, at most
    `rate` a second (0: back to back); the latency of each."""

    def __init__(self, port, rate):
        super().__init__(daemon=True)
        self.port, self.rate = port, rate
        self.stop = threading.Event()
        self.latencies = []
        self.errors = collections.Counter()
        self.auth = "Basic " + base64.b64encode(f"bench:{h.SECRET}".encode()).decode()

    def run(self):
        conn = None
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        next_at = time.monotonic()
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("POST", "/credential/jwt", "grant_type=client_credentials",
                             {"Authorization": self.auth,
                              "Content-Type": "application/x-www-form-urlencoded"})
                r = conn.getresponse()
                body = r.read()
                if r.status == 200 and b'"access_token"' in body:
                    self.latencies.append((time.monotonic() - t) * 1000)
                else:
                    self.errors[str(r.status)] += 1
                if r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                self.errors[type(e).__name__] += 1
                if conn is not None:
                    conn.close()
                conn = None
            if interval:
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
        if conn is not None:
            conn.close()


def read_status(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class Sampler(threading.Thread):
    """Once a second during a window: the attacker's open connections and the gateway's
    tollgate_connections gauge."""

    def __init__(self, status_path, metrics_port):
        super().__init__(daemon=True)
        self.status_path, self.metrics_port = status_path, metrics_port
        self.stop = threading.Event()
        self.attacker_open = []
        self.gateway_open = []

    def run(self):
        while not self.stop.wait(1.0):
            s = read_status(self.status_path) if self.status_path else None
            if s:
                self.attacker_open.append(s["open_total"])
            try:
                self.gateway_open.append(
                    series(gateway_metrics(self.metrics_port), "tollgate_connections"))
            except OSError:
                pass


def counter_delta(after, before):
    keys = set(after) | set(before)
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(keys)
            if after.get(k, 0) - before.get(k, 0)}


# ---------------------------------------------------------------------------------------


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--attack-worker":
        return attack_worker(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured window")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections")
    ap.add_argument("--issue-rate", type=float, default=50,
                    help="issuance probe: tokens a second at most, one at a time (0: back "
                         "to back)")
    ap.add_argument("--slowloris", type=int, default=1000)
    ap.add_argument("--uploads", type=int, default=100)
    ap.add_argument("--ramp", type=float, default=HEADER_TIMEOUT,
                    help="seconds over which the attack's connections are first opened")
    args = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("this scenario needs two cores: one for tollgate, one for the load")
    if not os.path.exists(h.TOLLGATE):
        raise SystemExit(f"{h.TOLLGATE} is missing: "
                         "cargo build --release --locked --bin tollgate")
    # The gateway inherits this limit: it holds a socket per slow connection.
    need = args.slowloris + args.uploads + args.connections + 200
    nofile = raise_nofile()
    if nofile < need:
        raise SystemExit(f"open-file limit {nofile} is below the {need} this run needs")
    os.sched_setaffinity(0, {int(h.LOAD_CPU)})
    os.makedirs(h.WORK, exist_ok=True)

    # Ctrl-C and SIGTERM end the run the same way: everything started is stopped by PID.
    def terminate(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    procs = []
    try:
        doc = run(args, procs)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        for p in reversed(procs):
            p.stop()
    return report(args, doc)


def run(args, procs):
    os.makedirs(os.path.join(h.WORK, "nginx-tmp"), exist_ok=True)
    ports = {k: h.free_port() for k in ("up", "tg", "tgm")}
    h.write("upstream.conf", upstream_conf(ports["up"]))
    h.start_nginx_upstream(procs)
    h.wait_http(ports["up"])
    h.es256_key()
    secret_hash = h.bench_secret_hash()
    upstreams_file = h.write("upstreams.yaml", h.tollgate_upstreams(ports["up"], secret_hash))
    conf = h.write("tollgate.yaml", gateway_conf(ports["tg"], ports["tgm"], upstreams_file))
    gw = h.Proc("tollgate", [h.TOLLGATE, "-c", conf], h.PROXY_CPU)
    procs.append(gw)
    h.wait_http(ports["tg"], "/.well-known/jwks.json")
    with open(f"/proc/{gw.p.pid}/comm") as f:
        if f.read().strip() != "tollgate":
            raise SystemExit(f"pid {gw.p.pid} is not tollgate")
    gw_nofile = open_file_limit(gw.p.pid)
    tg, tgm = ports["tg"], ports["tgm"]
    jwt = h.post_form(tg, "/credential/jwt", "grant_type=client_credentials",
                      f"bench:{h.SECRET}")["access_token"]
    commit = subprocess.run(["git", "-C", h.ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print(f"slow clients: {args.slowloris} slowloris (1 header byte/s) + {args.uploads} "
          f"uploads (Content-Length {UPLOAD_LENGTH}, 4 B/s; {' and '.join(UPLOAD_PATHS)}), "
          f"opened over {args.ramp:g} s and reopened when closed", flush=True)
    print(f"gateway: tollgate {commit}, 1 thread on core {h.PROXY_CPU}, pid {gw.p.pid}, "
          f"open-file limit {gw_nofile}; server.client_header_timeout {HEADER_TIMEOUT}s, "
          f"client_body_timeout {BODY_TIMEOUT}s, client_body_min_rate {BODY_MIN_RATE}, "
          f"keepalive_timeout {KEEPALIVE_TIMEOUT}s, listen max_connections {MAX_CONNECTIONS}",
          flush=True)
    print(f"normal client (core {h.LOAD_CPU}): wrk -t1 -c{args.connections} GET /api/x with "
          f"a JWT; issuance probe POST /credential/jwt one at a time, "
          f"{'back to back' if args.issue_rate <= 0 else f'at most {args.issue_rate:g}/s'}; "
          f"{args.rounds} rounds x {args.duration} s, alone / under attack interleaved",
          flush=True)
    if gw_nofile is not None and gw_nofile < args.slowloris + args.uploads + 200:
        raise SystemExit(f"the gateway's open-file limit {gw_nofile} is too low")

    def measure(status_path=None):
        probe = IssueProbe(tg, args.issue_rate)
        sampler = Sampler(status_path, tgm)
        cpu0 = cpu_seconds(gw.p.pid)
        cores0 = core_times()
        atk0 = (read_status(status_path) or {}).get("cpu_s") if status_path else None
        t0 = time.monotonic()
        probe.start()
        sampler.start()
        res = h.wrk(f"http://127.0.0.1:{tg}/api/x", args.connections, args.duration,
                    headers=[f"Authorization: Bearer {jwt}"])
        probe.stop.set()
        sampler.stop.set()
        probe.join()
        sampler.join()
        elapsed = time.monotonic() - t0
        busy = core_busy(cores0, core_times())
        atk1 = (read_status(status_path) or {}).get("cpu_s") if status_path else None
        lat = probe.latencies
        res["max_ms"] = wrk_max_ms(res.pop("raw"))
        return {
            "protected": res,
            "issue": {
                "count": len(lat),
                "rate": len(lat) / elapsed,
                "p50_ms": percentile(lat, 50),
                "p99_ms": percentile(lat, 99),
                "max_ms": max(lat) if lat else None,
                "errors": dict(probe.errors),
            },
            "gateway_cpu": (cpu_seconds(gw.p.pid) - cpu0) / elapsed,
            "proxy_core_busy": busy.get(h.PROXY_CPU),
            "load_core_busy": busy.get(h.LOAD_CPU),
            # The attacker's share of a core (its status is written every 0.5 s).
            "attacker_cpu": (atk1 - atk0) / elapsed if atk0 is not None and atk1 else None,
            "attacker_open_samples": sampler.attacker_open,
            "gateway_connections_samples": sampler.gateway_open,
        }

    def settle():
        """Until the gateway holds no client connection (at most 15 s)."""
        deadline = time.monotonic() + 15
        while True:
            n = series(gateway_metrics(tgm), "tollgate_connections")
            if n <= 0 or time.monotonic() > deadline:
                return n
            time.sleep(0.2)

    def alive_or_die():
        if not gw.alive():
            raise SystemExit(f"tollgate exited ({gw.p.returncode}); see {gw.log_path}")

    # Warm up: connections to the upstream, caches, the client's verified secret.
    h.wrk(f"http://127.0.0.1:{tg}/api/x", args.connections, 1,
          headers=[f"Authorization: Bearer {jwt}"])
    for _ in range(20):
        h.post_form(tg, "/credential/jwt", "grant_type=client_credentials", f"bench:{h.SECRET}")

    rounds = []
    for r in range(args.rounds):
        for attacked in (False, True):
            alive_or_die()
            left = settle()
            entry = {"round": r + 1, "attack": attacked, "gateway_connections_before": left}
            if not attacked:
                entry.update(measure())
            else:
                entry.update(attack_round(args, r, tg, tgm, gw, measure, procs))
            alive_or_die()
            rounds.append(entry)
            print_round(entry, args.duration)
    return {"ports": ports, "commit": commit, "gateway_pid": gw.p.pid,
            "gateway_nofile": gw_nofile, "rounds": rounds}


def attack_round(args, r, tg, tgm, gw, measure, procs):
    status_path = os.path.join(h.WORK, f"attack-{r + 1}.json")
    if os.path.exists(status_path):
        os.remove(status_path)
    total = args.slowloris + args.uploads
    atk = h.Proc(f"attack-{r + 1}",
                 [sys.executable, os.path.abspath(__file__), "--attack-worker",
                  "--port", str(tg), "--status", status_path,
                  "--slowloris", str(args.slowloris), "--uploads", str(args.uploads),
                  "--ramp", str(args.ramp)], h.LOAD_CPU)
    procs.append(atk)
    try:
        # The window starts once every slow connection has been opened (and is held).
        deadline = time.monotonic() + args.ramp + 30
        while True:
            s = read_status(status_path)
            if s and s["ramp_done"] and s["open_total"] >= total * 0.98:
                break
            if not atk.alive():
                raise SystemExit(f"the attacker exited ({atk.p.returncode}); "
                                 f"see {atk.log_path}")
            if time.monotonic() > deadline:
                raise SystemExit(f"the attack did not get its {total} connections open "
                                 f"(status: {s}); see {atk.log_path}")
            time.sleep(0.2)
        before = read_status(status_path)
        m_before = gateway_metrics(tgm)
        window_start = time.time()
        res = measure(status_path)
        window_end = time.time()
        m_after = gateway_metrics(tgm)      # the attack is still up
        after = read_status(status_path)
    finally:
        atk.stop()
        procs.remove(atk)
    final = read_status(status_path) or {}
    closes = [c for c in final.get("closes", []) if window_start <= c[2] <= window_end]

    def lifetimes(kind):
        xs = [c[3] for c in closes if c[0] == kind]
        return {"n": len(xs), "min_s": min(xs) if xs else None,
                "median_s": statistics.median(xs) if xs else None,
                "max_s": max(xs) if xs else None}

    res["attack"] = {
        "open_at_start": before["open"],
        "open_at_end": after["open"],
        "open_min": min(res["attacker_open_samples"], default=None),
        "closed_in_window": {k: counter_delta(after["closed"][k], before["closed"][k])
                             for k in ("slowloris", "upload")},
        "connect_errors_in_window": counter_delta(after["connect_errors"],
                                                  before["connect_errors"]),
        "lifetimes_in_window": {k: lifetimes(k) for k in ("slowloris", "upload")},
        "closed_total": final.get("closed"),
        "connect_errors_total": final.get("connect_errors"),
        "cpu_s": final.get("cpu_s"),
        "nofile": final.get("nofile"),
    }
    res["gateway_metrics_end"] = m_after
    res["gateway_timeouts_in_window"] = {
        phase: series(m_after, "tollgate_client_timeouts_total", phase=phase)
        - series(m_before, "tollgate_client_timeouts_total", phase=phase)
        for phase in ("header", "body")}
    return res


def fmt(v, spec=".2f"):
    return format(v, spec) if v is not None else "-"


def print_round(e, duration):
    p, i = e["protected"], e["issue"]
    errs = p["non_2xx"] + p["socket_errors"] + sum(i["errors"].values())
    print(f"round {e['round']} {'attack' if e['attack'] else 'alone ':6s}  protected "
          f"{p['rps']:>8.0f} req/s p50 {fmt(p['p50_ms'])} p99 {fmt(p['p99_ms'])} "
          f"max {fmt(p['max_ms'])} ms | issuance {i['rate']:>5.1f}/s p50 {fmt(i['p50_ms'])} "
          f"p99 {fmt(i['p99_ms'])} max {fmt(i['max_ms'])} ms | errors {errs} | CPU: gateway "
          f"{e['gateway_cpu'] * 100:.0f} %, core {h.PROXY_CPU} busy "
          f"{e['proxy_core_busy'] * 100:.0f} %, core {h.LOAD_CPU} busy "
          f"{e['load_core_busy'] * 100:.0f} %"
          + (f", attacker {e['attacker_cpu'] * 100:.0f} %" if e.get("attacker_cpu") is not None
             else ""), flush=True)
    if not e["attack"]:
        return
    a = e["attack"]
    for kind, expect in (("slowloris", "nothing"), ("upload", "answered 408")):
        closed = a["closed_in_window"][kind]
        lt = a["lifetimes_in_window"][kind]
        other = {k: v for k, v in closed.items() if k != expect}
        print(f"  {kind:9s} open {a['open_at_start'].get(kind, 0)} -> "
              f"{a['open_at_end'].get(kind, 0)}, closed by the gateway in the window "
              f"{sum(closed.values())} ({expect}: {closed.get(expect, 0)}"
              + (f"; other: {other}" if other else "") + "), lifetime "
              f"min/median/max {fmt(lt['min_s'], '.1f')}/{fmt(lt['median_s'], '.1f')}/"
              f"{fmt(lt['max_s'], '.1f')} s", flush=True)
    m = e["gateway_metrics_end"]
    print(f"  gateway at the end of the round: tollgate_client_timeouts_total header "
          f"{series(m, 'tollgate_client_timeouts_total', phase='header'):.0f} (+"
          f"{e['gateway_timeouts_in_window']['header']:.0f} in the window), body "
          f"{series(m, 'tollgate_client_timeouts_total', phase='body'):.0f} (+"
          f"{e['gateway_timeouts_in_window']['body']:.0f}); tollgate_connections "
          f"{series(m, 'tollgate_connections'):.0f}; refused "
          f"{series(m, 'tollgate_connections_refused_total'):.0f}; attacker open min "
          f"{a['open_min']}, connect errors {a['connect_errors_in_window'] or 0}", flush=True)


def report(args, doc):
    rounds = doc["rounds"]
    alone = [e for e in rounds if not e["attack"]]
    attack = [e for e in rounds if e["attack"]]

    def med(es, get):
        xs = [get(e) for e in es]
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if xs else None

    def ratio(get):
        xs = [get(b) / get(a) for a, b in zip(alone, attack) if get(a) and get(b) is not None]
        return statistics.median(xs) if xs else None

    rows = [
        ("protected route req/s", lambda e: e["protected"]["rps"], ".0f"),
        ("protected route p50 ms", lambda e: e["protected"]["p50_ms"], ".2f"),
        ("protected route p99 ms", lambda e: e["protected"]["p99_ms"], ".2f"),
        ("protected route max ms", lambda e: e["protected"]["max_ms"], ".2f"),
        ("token issuance /s", lambda e: e["issue"]["rate"], ".1f"),
        ("token issuance p50 ms", lambda e: e["issue"]["p50_ms"], ".2f"),
        ("token issuance p99 ms", lambda e: e["issue"]["p99_ms"], ".2f"),
        ("token issuance max ms", lambda e: e["issue"]["max_ms"], ".2f"),
        ("gateway CPU %", lambda e: e["gateway_cpu"] * 100, ".0f"),
        (f"core {h.PROXY_CPU} busy % (gateway)", lambda e: e["proxy_core_busy"] * 100, ".0f"),
        (f"core {h.LOAD_CPU} busy % (load)", lambda e: e["load_core_busy"] * 100, ".0f"),
    ]
    print()
    print(f"{'normal client':26s} {'alone':>9s} {'attack':>9s} {'attack/alone':>13s}   "
          "rounds (alone | attack)")
    summary = {}
    for name, get, spec in rows:
        s = {"alone": med(alone, get), "attack": med(attack, get), "ratio": ratio(get),
             "per_round_alone": [get(e) for e in alone],
             "per_round_attack": [get(e) for e in attack]}
        summary[name] = s
        print(f"{name:26s} {fmt(s['alone'], spec):>9s} {fmt(s['attack'], spec):>9s} "
              f"{fmt(s['ratio'], '.3f'):>13s}   "
              + " ".join(fmt(x, spec) for x in s["per_round_alone"]) + " | "
              + " ".join(fmt(x, spec) for x in s["per_round_attack"]))

    def errors(e):
        return (e["protected"]["non_2xx"] + e["protected"]["socket_errors"]
                + sum(e["issue"]["errors"].values()))

    errs = {"alone": sum(errors(e) for e in alone), "attack": sum(errors(e) for e in attack)}
    print(f"{'normal client errors':26s} {errs['alone']:>9d} {errs['attack']:>9d}")

    print()
    print("slow connections closed by the gateway during each attack window:")
    slow_ok = True
    for e in attack:
        a = e["attack"]
        sl, up = a["closed_in_window"]["slowloris"], a["closed_in_window"]["upload"]
        lts = a["lifetimes_in_window"]
        unexpected = (sum(v for k, v in sl.items() if k != "nothing")
                      + sum(v for k, v in up.items() if k != "answered 408"))
        slow_ok &= unexpected == 0
        print(f"  round {e['round']}: slowloris {sum(sl.values())} "
              f"(nothing {sl.get('nothing', 0)}, median lifetime "
              f"{fmt(lts['slowloris']['median_s'], '.1f')} s), uploads {sum(up.values())} "
              f"(408 {up.get('answered 408', 0)}, median lifetime "
              f"{fmt(lts['upload']['median_s'], '.1f')} s), unexpected {unexpected}; gateway "
              f"timeouts +{e['gateway_timeouts_in_window']['header']:.0f} header, "
              f"+{e['gateway_timeouts_in_window']['body']:.0f} body; tollgate_connections at "
              f"the end {series(e['gateway_metrics_end'], 'tollgate_connections'):.0f}")
    expected_closes = (args.slowloris * args.duration / HEADER_TIMEOUT,
                       args.uploads * args.duration / BODY_TIMEOUT)
    print(f"  (expected about {expected_closes[0]:.0f} slowloris and {expected_closes[1]:.0f} "
          f"upload closes per {args.duration} s window: one per connection every "
          f"{HEADER_TIMEOUT} s / {BODY_TIMEOUT} s)")

    out = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "setup": {
            "commit": doc["commit"], "rounds": args.rounds, "duration_s": args.duration,
            "connections": args.connections, "issue_rate": args.issue_rate,
            "slowloris": args.slowloris, "uploads": args.uploads, "ramp_s": args.ramp,
            "upload_length": UPLOAD_LENGTH, "upload_paths": UPLOAD_PATHS,
            "client_header_timeout_s": HEADER_TIMEOUT, "client_body_timeout_s": BODY_TIMEOUT,
            "client_body_min_rate": BODY_MIN_RATE, "keepalive_timeout_s": KEEPALIVE_TIMEOUT,
            "max_connections": MAX_CONNECTIONS, "gateway_threads": 1,
            "gateway_nofile": doc["gateway_nofile"], "proxy_cpu": h.PROXY_CPU,
            "load_cpu": h.LOAD_CPU, "cpus": os.cpu_count(),
        },
        "summary": summary,
        "normal_client_errors": errs,
        "rounds": rounds,
    }
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(h.WORK, f"slow-{stamp}.json")
    for p in (path, os.path.join(h.WORK, "latest.json")):
        with open(p, "w") as f:
            json.dump(out, f, indent=1)
    print(f"\nJSON: {path}")
    return 0 if errs["alone"] == 0 and errs["attack"] == 0 and slow_ok else 1


if __name__ == "__main__":
    sys.exit(main())
