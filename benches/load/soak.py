#!/usr/bin/env python3
"""Soak: a long mixed run against one gateway, sampling what must not grow.

    scripts/bench.sh --soak [--minutes 30 --sample 10 --reload-every 60 --rate 300]
    python3 benches/load/soak.py --markdown target/bench/soak/latest.json   # the table again

One tollgate (release binary, SQLite store in a fresh state directory, `sync: full`) in
front of the harness's nginx upstream, under a paced mix from Python threads on keep-alive
connections, at --rate requests per second in all:

  - client_credentials issuance, JWT (/credential/jwt) and opaque (/credential/token);
  - issuance with a refresh token, and refresh_token grants that rotate it
    (/credential/jwt/regenerate), each new access token then used on the protected route;
  - introspection (RFC 7662) of live tokens: `active: true`;
  - the protected route (/api/**, scope soak:read) with live tokens: 200;
  - revocation (RFC 7009): a token is used (200, so it is cached), revoked, used again
    (expected 401) and introspected (expected `active: false`); now and then a refresh
    token, which takes its grant along: its access token then gets 401 and the refresh
    token 400 invalid_grant;
  - a call without a token: expected 401;
  - every --reload-every seconds SIGHUP, with the upstreams file alternately adding and
    removing an API; each reload must be logged as done, and the added API must answer
    (401 without a token) or be gone (404) right after it.

Every answer is counted by (operation, status); anything but the expected status is an
error, and the run exits 1 when there is any. Every --sample seconds it records the
gateway's RSS (/proc/PID/status), open file descriptors (/proc/PID/fd), threads and CPU
time, its Prometheus counters, any cache-size, store-size or reload series it exports, and
the store: rows of the token and revocation tables (read-only sqlite3) and the size of the
database file and its write-ahead log, against the rows the store should hold (the tokens
and revocations the run was given that have not expired, up to those a purge may not have
reached yet). Access tokens live 60 s, refresh tokens 90 s, the purge runs every 10 s, so
the store reaches its steady state within about two minutes.

Verdicts, after a warm-up (the first sixth of the run, at least the time the store and the
validation cache take to fill): RSS of the last third of the run within 10 % + 8 MiB of
the median right after the warm-up; open fds flat; store rows within the expected range in
every sample and its files not growing; cache sizes within their configured bounds (when
the gateway exports them); every reload done; no 5xx, no store error; 0 errors.

Results under target/bench/soak/ (or --out): soak-<time>.json (every sample), .csv, .md
(the table for the README) and .png when matplotlib is installed.

Layout (2 cores): tollgate on core 0; the nginx upstream and this script's load on core 1.
"""

import argparse
import base64
import collections
import csv
import datetime
import http.client
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SECRET = "soak-secret"
ISSUER = "http://tollgate.soak"
# Token and store settings: short lifetimes so that the store reaches its steady state
# early in the run, and a validation cache smaller than the distinct tokens the run
# presents within its ttl, so that its bound is what holds it.
ACCESS_LIFETIME = 60
REFRESH_LIFETIME = 90
LEEWAY = 10
PURGE_INTERVAL = 10
VALIDATION_CACHE = {"max_entries": 2000, "ttl": 120}
CLIENT_AUTH_CACHE = {"max_entries": 100, "ttl": 300}
# A token is used only while it has this long left (no answer depends on a race with exp).
MARGIN = 5
# Refresh chains kept going at once; revocable tokens kept aside.
CHAINS = 40
REVOCABLE = 20
POOL = 600

# Share of operations, and the requests each makes.
MIX = {
    "protected": (45, 1),
    "introspect": (12, 1),
    "issue_jwt": (8, 1),
    "issue_opaque": (8, 1),
    "issue_refresh": (2, 1),
    "refresh": (10, 2),
    "revoke": (5, 4),
    "revoke_grant": (1, 3),
    "no_token": (2, 1),
}

# What each request may answer; anything else is an error.
EXPECTED = {
    "issue_jwt": {"200"},
    "issue_opaque": {"200"},
    "issue_refresh": {"200"},
    "protected": {"200"},
    "introspect": {"200 active"},
    "refresh": {"200"},
    "refresh.protected": {"200"},
    "revoke.protected_before": {"200"},
    "revoke": {"200"},
    "revoke.protected_after": {"401"},
    "revoke.introspect_after": {"200 inactive"},
    "revoke_grant": {"200"},
    "revoke_grant.protected_after": {"401"},
    "revoke_grant.refresh_after": {"400 invalid_grant"},
    "no_token": {"401"},
    "reload_probe.added": {"401"},
    "reload_probe.removed": {"404"},
    # An exception in this script's own load code: always an error, never expected.
    "load_exception": set(),
}
# Answers that are refusals the run asks for (the gateway counts them as errors of its own).
EXPECTED_REFUSALS = {"revoke.protected_after", "revoke_grant.protected_after",
                     "revoke_grant.refresh_after", "no_token", "reload_probe.added",
                     "reload_probe.removed"}


def basic(client):
    return "Basic " + base64.b64encode(f"{client}:{SECRET}".encode()).decode()


def jwt_exp(token):
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))["exp"]


# ---------------------------------------------------------------------------------------
# Configs


def gateway_conf(port, metrics_port, upstreams_file, state, threads):
    vc, ca = VALIDATION_CACHE, CLIENT_AUTH_CACHE
    return f"""
listen:
  - addr: 127.0.0.1:{port}
metrics:
  listen: 127.0.0.1:{metrics_port}
issuer: {ISSUER}
upstreams_file: {upstreams_file}
state_dir: {state}
server:
  threads: {threads}
  grace_period: 0s
  graceful_shutdown_timeout: 1s
tokens:
  access_token_lifetime: {ACCESS_LIFETIME}s
  leeway: {LEEWAY}s
store:
  sync: full
  purge_interval: {PURGE_INTERVAL}s
validation_cache:
  max_entries: {vc["max_entries"]}
  ttl: {vc["ttl"]}s
client_auth_cache:
  max_entries: {ca["max_entries"]}
  ttl: {ca["ttl"]}s
log:
  level: info
  access_log: false
"""


def upstreams(up, secret_hash, generation):
    """Odd generations add the API `extra`; the reload probe checks it came or went."""
    server = f'["127.0.0.1:{up}"]'
    lines = [
        f"# generation {generation}",
        "apis:",
        f"  - {{ name: api, prefix: /api, upstream: {{ servers: {server}, "
        "health_check: { kind: tcp, interval: 1s } }, auth: jwt, "
        'rules: [{ methods: [GET], path: "/api/**", all_of: [soak:read] }] }',
    ]
    if generation % 2:
        lines.append(f"  - {{ name: extra, prefix: /extra, upstream: {{ servers: {server} }}, "
                     "auth: jwt }")
    lines += [
        "credentials:",
        f'  - {{ client_id: soak-cc, client_secret_hash: "{secret_hash}", acl: [api], '
        f"roles: [soak:read], token: {{ access_token_lifetime: {ACCESS_LIFETIME}s }} }}",
        f'  - {{ client_id: soak-refresh, client_secret_hash: "{secret_hash}", acl: [api], '
        f"roles: [soak:read], token: {{ access_token_lifetime: {ACCESS_LIFETIME}s, "
        f"refresh: true, refresh_token_lifetime: {REFRESH_LIFETIME}s }} }}",
    ]
    return "\n".join(lines) + "\n"


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------
# Client-side state


class Counts:
    """Every answer by (request, outcome); the unexpected ones are errors."""

    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()
        self.requests = 0
        self.errors = 0
        self.examples = []

    def add(self, name, outcome, body=b"", t0=None):
        ok = outcome in EXPECTED[name]
        with self.lock:
            self.c[(name, outcome)] += 1
            self.requests += 1
            if not ok:
                self.errors += 1
                if len(self.examples) < 30:
                    self.examples.append({
                        "t": round(time.monotonic() - t0, 1) if t0 else None,
                        "request": name, "outcome": outcome,
                        "body": body[:300].decode("utf-8", "replace")})
        return ok

    def snapshot(self):
        with self.lock:
            return self.requests, self.errors, dict(self.c)


class Ledger:
    """Expiry times of what the store was given (tokens; revocations), to know how many
    rows it should hold: those not expired, up to those a purge has not reached yet."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rows = {"tokens": [], "revocations": []}

    def add(self, table, expires):
        with self.lock:
            self.rows[table].append(expires)

    def expected(self, now):
        out = {}
        with self.lock:
            for table, exps in self.rows.items():
                keep = [e for e in exps if e >= now - PURGE_INTERVAL - 60]
                self.rows[table] = keep
                # Live rows are never purged; expired ones go at the next purge (every
                # PURGE_INTERVAL). One second either way for the clocks' rounding.
                out[table] = (sum(1 for e in keep if e >= now + 1),
                              sum(1 for e in keep if e >= now - PURGE_INTERVAL - 3))
        return out


class Pools:
    """Live tokens: shared ones (used by many, never revoked), revocable ones (taken by
    one revocation each) and refresh chains (each held by one worker at a time, so a
    refresh token is never used twice)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.shared = {"jwt": collections.deque(maxlen=POOL),
                       "opaque": collections.deque(maxlen=POOL)}
        self.revocable = {"jwt": collections.deque(), "opaque": collections.deque()}
        self.chains = collections.deque()
        # Distinct tokens presented to the protected route, by first presentation: what the
        # validation cache is asked to hold within its ttl (it holds at most max_entries).
        self.presented = {}
        self.dropped_chains = 0

    def add(self, fmt, entry):
        with self.lock:
            if len(self.revocable[fmt]) < REVOCABLE:
                self.revocable[fmt].append(entry)
            else:
                self.shared[fmt].append(entry)

    def pick(self, fmt):
        now = time.time()
        with self.lock:
            d = self.shared[fmt]
            while d and d[0]["exp"] <= now + MARGIN:
                d.popleft()
            return random.choice(d) if d else None

    def take_revocable(self, fmt):
        now = time.time()
        with self.lock:
            d = self.revocable[fmt]
            while d:
                e = d.popleft()
                if e["exp"] > now + MARGIN:
                    return e
            return None

    def take_chain(self):
        now = time.time()
        with self.lock:
            while self.chains:
                c = self.chains.popleft()
                if c["rt_exp"] > now + MARGIN + 5:
                    return c
                self.dropped_chains += 1
            return None

    def put_chain(self, chain):
        with self.lock:
            self.chains.append(chain)
            while len(self.chains) > CHAINS:
                self.chains.popleft()
                self.dropped_chains += 1

    def presented_token(self, token):
        now = time.time()
        with self.lock:
            first = self.presented.get(token)
            if first is None or first < now - VALIDATION_CACHE["ttl"]:
                self.presented[token] = now

    def cache_demand(self):
        """Distinct tokens first presented within the validation cache's ttl."""
        cutoff = time.time() - VALIDATION_CACHE["ttl"]
        with self.lock:
            self.presented = {k: v for k, v in self.presented.items() if v >= cutoff}
            return len(self.presented)


# ---------------------------------------------------------------------------------------
# Load


class Worker(threading.Thread):
    def __init__(self, n, port, rate, stop, counts, pools, ledger, t0):
        super().__init__(daemon=True, name=f"load-{n}")
        self.port, self.rate, self.stop = port, rate, stop
        self.counts, self.pools, self.ledger, self.t0 = counts, pools, ledger, t0
        self.conn = self.connect()
        self.rng = random.Random(n)
        self.ops = list(MIX)
        self.weights = [MIX[o][0] for o in self.ops]

    def connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def call(self, method, path, body=None, headers=None):
        """(status, body); status is the text of an exception when there was no answer."""
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            r = self.conn.getresponse()
            data = r.read()
            return str(r.status), data
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            self.conn = self.connect()
            return f"exception {type(e).__name__}", str(e).encode()

    def record(self, name, outcome, body=b""):
        return self.counts.add(name, outcome, body, self.t0)

    def form(self, path, client, body):
        return self.call("POST", path, body, {
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": basic(client)})

    def protected(self, name, token, expect_ok=True):
        status, body = self.call("GET", f"/api/{name}", headers={
            "Authorization": f"Bearer {token}"})
        if expect_ok and status == "200":
            self.pools.presented_token(token)
        return self.record(name, status, body)

    # One function per operation of MIX.

    def issue(self, name, fmt, client="soak-cc", grant="client_credentials"):
        path = "/credential/jwt" if fmt == "jwt" else "/credential/token"
        status, body = self.form(path, client, f"grant_type={grant}")
        if not self.record(name, status, body):
            return None
        doc = json.loads(body)
        now = time.time()
        token = doc["access_token"]
        exp = jwt_exp(token) if fmt == "jwt" else int(now) + doc["expires_in"]
        if fmt == "opaque":
            self.ledger.add("tokens", exp)
        entry = {"token": token, "exp": exp, "client": client, "fmt": fmt}
        if "refresh_token" in doc:
            rt_exp = int(now) + REFRESH_LIFETIME
            self.ledger.add("tokens", rt_exp)
            entry["rt"], entry["rt_exp"] = doc["refresh_token"], rt_exp
        return entry

    def op_issue_jwt(self):
        e = self.issue("issue_jwt", "jwt")
        if e:
            self.pools.add("jwt", e)

    def op_issue_opaque(self):
        e = self.issue("issue_opaque", "opaque")
        if e:
            self.pools.add("opaque", e)

    def op_issue_refresh(self):
        e = self.issue("issue_refresh", "opaque", client="soak-refresh")
        if e:
            self.pools.put_chain({"rt": e["rt"], "rt_exp": e["rt_exp"], "at": e["token"],
                                  "at_exp": e["exp"]})

    def op_protected(self):
        e = self.pools.pick(self.rng.choice(("jwt", "opaque")))
        if e is None:
            return self.op_issue_opaque()
        self.protected("protected", e["token"])

    def op_no_token(self):
        status, body = self.call("GET", "/api/no_token")
        self.record("no_token", status, body)

    def op_introspect(self):
        e = self.pools.pick(self.rng.choice(("jwt", "opaque")))
        if e is None:
            return self.op_issue_jwt()
        self.introspect("introspect", e)

    def introspect(self, name, e):
        status, body = self.form("/credential/introspect", e["client"], f"token={e['token']}")
        if status == "200":
            try:
                status += " active" if json.loads(body).get("active") else " inactive"
            except ValueError:
                status += " unparsable"
        self.record(name, status, body)

    def op_refresh(self):
        c = self.pools.take_chain()
        if c is None:
            return self.op_issue_refresh()
        status, body = self.form("/credential/jwt/regenerate", "soak-refresh",
                                 f"grant_type=refresh_token&refresh_token={c['rt']}")
        if not self.record("refresh", status, body):
            return
        doc = json.loads(body)
        rt_exp = int(time.time()) + REFRESH_LIFETIME
        self.ledger.add("tokens", rt_exp)
        chain = {"rt": doc["refresh_token"], "rt_exp": rt_exp, "at": doc["access_token"],
                 "at_exp": jwt_exp(doc["access_token"])}
        self.protected("refresh.protected", chain["at"])
        self.pools.put_chain(chain)

    def op_revoke(self):
        fmt = self.rng.choice(("jwt", "opaque"))
        e = self.pools.take_revocable(fmt)
        if e is None:
            e = self.issue(f"issue_{fmt}", fmt)
            if e is None:
                return
        # Used first, so that the revocation has a cached token to take back.
        self.protected("revoke.protected_before", e["token"])
        status, body = self.form("/credential/revoke", e["client"], f"token={e['token']}")
        if not self.record("revoke", status, body):
            return
        # Opaque: until the token's expiry; JWT: until exp + leeway.
        self.ledger.add("revocations", e["exp"] + (LEEWAY if fmt == "jwt" else 0))
        self.protected("revoke.protected_after", e["token"], expect_ok=False)
        self.introspect("revoke.introspect_after", e)

    def op_revoke_grant(self):
        c = self.pools.take_chain()
        if c is None:
            return self.op_issue_refresh()
        status, body = self.form("/credential/revoke", "soak-refresh", f"token={c['rt']}")
        if not self.record("revoke_grant", status, body):
            return
        # A grant is remembered until its last access token expires (lifetime + leeway).
        self.ledger.add("revocations", int(time.time()) + ACCESS_LIFETIME + LEEWAY)
        if c["at_exp"] > time.time() + MARGIN:
            self.protected("revoke_grant.protected_after", c["at"], expect_ok=False)
        status, body = self.form("/credential/jwt/regenerate", "soak-refresh",
                                 f"grant_type=refresh_token&refresh_token={c['rt']}")
        if status == "400":
            try:
                status += " " + json.loads(body).get("error", "")
            except ValueError:
                status += " unparsable"
        self.record("revoke_grant.refresh_after", status, body)

    def run(self):
        per_op = sum(w * n for w, n in MIX.values()) / sum(w for w, _ in MIX.values())
        interval = per_op / self.rate
        next_at = time.monotonic() + self.rng.random() * interval
        while not self.stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                if self.stop.wait(delay):
                    break
            elif delay < -1.0:
                next_at = time.monotonic()  # behind by more than a second: no burst
            next_at += interval
            op = self.rng.choices(self.ops, self.weights)[0]
            try:
                getattr(self, f"op_{op}")()
            except Exception as e:  # a bug here must show, not stop the worker
                self.counts.add("load_exception", f"{op}: {type(e).__name__}: {e}"[:120],
                                b"", self.t0)
        self.conn.close()


class Reloader(threading.Thread):
    """SIGHUP every `every` seconds, alternating the upstreams file; each reload must be
    logged as done, and the API it adds or removes must be there or gone just after."""

    def __init__(self, gw, port, every, stop, counts, write_upstreams, t0):
        super().__init__(daemon=True, name="reloader")
        self.gw, self.port, self.every, self.stop = gw, port, every, stop
        self.counts, self.write_upstreams, self.t0 = counts, write_upstreams, t0
        self.generation = 0
        self.events = []

    def logged(self):
        with open(self.gw.log_path, errors="replace") as f:
            text = f.read()
        return (text.count("reloaded the upstreams file"),
                text.count("reload refused"))

    def run(self):
        while not self.stop.wait(self.t0 + self.every * (len(self.events) + 1)
                                 - time.monotonic()):
            self.generation += 1
            self.write_upstreams(self.generation)
            done, refused = self.logged()
            sent = time.monotonic()
            os.kill(self.gw.p.pid, signal.SIGHUP)
            outcome = "timeout"
            while time.monotonic() - sent < 10:
                d, r = self.logged()
                if r > refused:
                    outcome = "refused"
                    break
                if d > done:
                    outcome = "done"
                    break
                time.sleep(0.05)
            took = time.monotonic() - sent
            probe = None
            if outcome == "done":
                name = "reload_probe.added" if self.generation % 2 else "reload_probe.removed"
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                try:
                    c.request("GET", "/extra/x")
                    r = c.getresponse()
                    body = r.read()
                    probe = str(r.status)
                except (OSError, http.client.HTTPException) as e:
                    probe, body = f"exception {type(e).__name__}", str(e).encode()
                finally:
                    c.close()
                self.counts.add(name, probe, body, self.t0)
            self.events.append({"t": round(sent - self.t0, 1), "generation": self.generation,
                                "outcome": outcome, "seconds": round(took, 3),
                                "probe": probe})

    def summary(self):
        return {"sent": len(self.events),
                "done": sum(e["outcome"] == "done" for e in self.events)}


# ---------------------------------------------------------------------------------------
# Sampling


def proc_stats(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])  # kB
            elif k == "Threads":
                out[k] = int(v)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    kinds = collections.Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        kinds["fd_sockets" if target.startswith("socket:") else
              "fd_files" if target.startswith("/") else "fd_other"] += 1
    return {"rss_kib": out["VmRSS"], "hwm_kib": out["VmHWM"], "threads": out["Threads"],
            "cpu_s": ticks / os.sysconf("SC_CLK_TCK"), "fds": sum(kinds.values()),
            "fd_sockets": kinds["fd_sockets"], "fd_files": kinds["fd_files"],
            "fd_other": kinds["fd_other"]}


# Series that tell cache sizes (tollgate_cache_entries{cache=validation|secrets|revocations}),
# store size or reloads: recorded whenever the gateway exports them.
SIZE_SERIES = re.compile(r"^tollgate_\w*(cache|store|reload|revocation)\w*$")
KNOWN_SERIES = re.compile(r"^tollgate_(validation_cache_(hits|misses)_total|store_up|"
                          r"store_errors_total|store_operation_duration_seconds\w*)$")


def metric_sum(series, name, **labels):
    total = 0.0
    for key, v in series.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all(f'{k}="{val}"' in rest for k, val in labels.items()):
            total += v
    return total


def gauges(series):
    """Cache-size, store-size and reload series the gateway exports, if any."""
    out = {}
    for key, v in series.items():
        base = key.partition("{")[0]
        if SIZE_SERIES.match(base) and not KNOWN_SERIES.match(base):
            out[key] = v
    return out


def store_stats(db):
    out = {}
    for suffix, key in (("", "db_bytes"), ("-wal", "wal_bytes"), ("-shm", "shm_bytes")):
        try:
            out[key] = os.path.getsize(db + suffix)
        except OSError:
            out[key] = 0
    for attempt in range(5):
        # A fresh read-only connection each time, closed at once: no snapshot is held
        # that would keep the gateway's checkpoints from resetting the log.
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            rows = conn.execute(
                "SELECT kind, format, count(*) FROM tokens GROUP BY kind, format").fetchall()
            by = {(k, f): n for k, f, n in rows}
            out["tokens"] = sum(by.values())
            out["tokens_access_opaque"] = by.get((1, 2), 0)
            out["tokens_refresh"] = sum(n for (k, _), n in by.items() if k == 2)
            out["revocations"] = conn.execute("SELECT count(*) FROM revocations").fetchone()[0]
            out["ephemeral"] = conn.execute("SELECT count(*) FROM ephemeral").fetchone()[0]
            out["pages"] = conn.execute("PRAGMA page_count").fetchone()[0]
            out["free_pages"] = conn.execute("PRAGMA freelist_count").fetchone()[0]
            return out
        except sqlite3.OperationalError:
            if attempt == 4:
                raise
            time.sleep(0.2)
        finally:
            conn.close()


def take_sample(t0, gw, metrics_port, db, counts, pools, ledger, reloader):
    now_wall = time.time()
    s = {"t": round(time.monotonic() - t0, 1),
         "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    s.update(proc_stats(gw.p.pid))
    series = h.scrape_metrics(metrics_port)
    s["gw_requests"] = metric_sum(series, "tollgate_requests_total")
    s["gw_5xx"] = metric_sum(series, "tollgate_requests_total", status="5xx")
    s["gw_tokens_issued"] = metric_sum(series, "tollgate_tokens_issued_total")
    s["gw_token_endpoint_errors"] = metric_sum(series, "tollgate_token_endpoint_errors_total")
    s["gw_validations_ok"] = metric_sum(series, "tollgate_token_validations_total",
                                        outcome="ok")
    s["gw_validations_revoked"] = metric_sum(series, "tollgate_token_validations_total",
                                             outcome="revoked")
    s["gw_validation_cache_hits"] = metric_sum(series, "tollgate_validation_cache_hits_total")
    s["gw_validation_cache_misses"] = metric_sum(series,
                                                 "tollgate_validation_cache_misses_total")
    s["gw_secret_verifications"] = metric_sum(series, "tollgate_secret_verifications_total")
    s["gw_store_errors"] = metric_sum(series, "tollgate_store_errors_total")
    s["gw_store_up"] = metric_sum(series, "tollgate_store_up")
    s["gauges"] = gauges(series)
    s.update(store_stats(db))
    exp = ledger.expected(now_wall)
    s["tokens_expected"] = list(exp["tokens"])
    s["revocations_expected"] = list(exp["revocations"])
    s["requests"], s["errors"], _ = counts.snapshot()
    s["cache_demand"] = pools.cache_demand()
    s["reloads"] = reloader.summary() if reloader else {"sent": 0, "done": 0}
    return s


# ---------------------------------------------------------------------------------------
# Verdicts and report


def mib(kib):
    return kib / 1024


def window(samples, start, end):
    return [s for s in samples if start <= s["t"] <= end]


def slope_per_hour(points):
    """Least-squares slope of (t seconds, value) points, per hour."""
    if len(points) < 3:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return None if den == 0 else sum((t - mt) * (v - mv) for t, v in points) / den * 3600


def verdicts(doc):
    samples, setup = doc["samples"], doc["setup"]
    duration = samples[-1]["t"] if samples else 0
    warm = setup["warmup_s"]
    base = window(samples, warm, warm + max(duration / 6, 2 * setup["sample_s"]))
    final = window(samples, duration * 2 / 3, duration)
    after = window(samples, warm, duration)
    checks = []

    def check(name, ok, measured, limit):
        checks.append({"name": name, "ok": ok, "measured": measured, "limit": limit})

    counts = doc["counts"]
    check("errors (unexpected answers)", doc["errors"] == 0, f"{doc['errors']}",
          f"0 of {doc['requests']:,} requests")
    if base and final:
        b = statistics.median(s["rss_kib"] for s in base)
        f = statistics.median(s["rss_kib"] for s in final)
        limit = b * 1.10 + 8 * 1024
        slope = slope_per_hour([(s["t"], mib(s["rss_kib"])) for s in after])
        check("RSS: last third (median) vs just after warm-up", f <= limit,
              f"{mib(f):.1f} vs {mib(b):.1f} MiB"
              + (f" (slope {slope:+.1f} MiB/h)" if slope is not None else ""),
              f"<= {mib(limit):.1f} MiB (x1.10 + 8 MiB)")
    if after:
        fds = [s["fds"] for s in after]
        check("open fds after warm-up: max - min", max(fds) - min(fds) <= 16,
              f"{max(fds) - min(fds)} ({min(fds)}..{max(fds)})", "<= 16")
        th = [s["threads"] for s in after]
        check("threads after warm-up: max - min", max(th) - min(th) <= 2,
              f"{max(th) - min(th)} ({min(th)}..{max(th)})", "<= 2")
    tol = 2 * setup["workers"] + 5
    # The expected range holds from the first sample: no warm-up needed.
    for table in ("tokens", "revocations"):
        bad = [s for s in samples if not (s[f"{table}_expected"][0] - tol <= s[table]
                                          <= s[f"{table}_expected"][1] + tol)]
        worst = bad[0] if bad else None
        check(f"store {table}: rows within the expected range, every sample",
              bool(samples) and not bad,
              (f"{len(bad)} of {len(samples)} outside; first at {worst['t']:.0f}s: "
               f"{worst[table]} vs {worst[table + '_expected']}") if bad else
              f"{len(samples)} samples, max {max((s[table] for s in samples), default=0):,}"
              " rows", f"[expected - {tol}, expected + {tol}]")
    if base and final:
        size = lambda s: s["db_bytes"] + s["wal_bytes"]  # noqa: E731
        b = max(size(s) for s in base)
        f = max(size(s) for s in final)
        limit = b * 1.25 + 4 * 1024 * 1024
        check("store files (db + wal): last third max vs just after warm-up", f <= limit,
              f"{f / 1048576:.1f} vs {b / 1048576:.1f} MiB", f"<= {limit / 1048576:.1f} MiB")
        rb = statistics.median(s["tokens"] for s in base)
        rf = statistics.median(s["tokens"] for s in final)
        check("store token rows: last third (median) vs just after warm-up",
              rf <= rb * 1.25 + 200, f"{rf:,.0f} vs {rb:,.0f}", "<= x1.25 + 200")
    cache_series = {k for s in samples for k in s["gauges"] if "cache" in k}
    if cache_series:
        for key in sorted(cache_series):
            bound = (VALIDATION_CACHE["max_entries"] if "validation" in key else
                     CLIENT_AUTH_CACHE["max_entries"] if ("auth" in key or "secret" in key)
                     else None)
            top = max(s["gauges"].get(key, 0) for s in samples)
            check(f"cache {key}", bound is None or top <= bound, f"max {top:,.0f}",
                  f"<= {bound:,}" if bound else "(no configured bound known)")
    else:
        demand = max((s["cache_demand"] for s in samples), default=0)
        check("cache sizes within bounds", None,
              f"not exported by the gateway; distinct tokens presented within the "
              f"validation cache ttl: up to {demand:,}",
              f"<= {VALIDATION_CACHE['max_entries']:,} (validation), "
              f"<= {CLIENT_AUTH_CACHE['max_entries']} (client auth)")
    rel = doc["reloads"]
    sent = len(rel)
    done = sum(e["outcome"] == "done" for e in rel)
    check("reloads done (logged) / SIGHUPs sent", done == sent,
          f"{done} / {sent}" + (f", slowest {max(e['seconds'] for e in rel):.2f}s"
                                if rel else ""), "all")
    # The gateway's own counts once the load has stopped, against the run's.
    final = doc.get("final_metrics") or {}
    check("gateway 5xx answers", final.get("gw_5xx", 0) == 0, f"{final.get('gw_5xx', 0):.0f}",
          "0")
    check("store errors / store down", final.get("gw_store_errors", 0) == 0
          and all(s["gw_store_up"] == 1 for s in samples),
          f"{final.get('gw_store_errors', 0):.0f} / "
          f"{sum(s['gw_store_up'] != 1 for s in samples)} samples down", "0 / 0")
    refused_400 = sum(v for (name, outcome), v in counts.items()
                      if name == "revoke_grant.refresh_after" and outcome.startswith("400"))
    check("token-endpoint errors the gateway counted = refusals the run asked for",
          final.get("gw_token_endpoint_errors") == refused_400,
          f"{final.get('gw_token_endpoint_errors', 0):.0f}", f"= {refused_400}")
    issued = sum(v for (name, outcome), v in counts.items()
                 if name in ("issue_jwt", "issue_opaque", "issue_refresh", "refresh")
                 and outcome == "200")
    check("tokens the gateway counted as issued = token answers the run received",
          final.get("gw_tokens_issued") == issued,
          f"{final.get('gw_tokens_issued', 0):,.0f}", f"= {issued:,}")
    return checks


def minute_rows(samples):
    """The sample nearest each minute, plus the last."""
    if not samples:
        return []
    rows, end = [], samples[-1]["t"]
    for m in range(int(end // 60) + 1):
        rows.append(min(samples, key=lambda s: abs(s["t"] - 60 * m)))
    if rows[-1] is not samples[-1]:
        rows.append(samples[-1])
    out = []
    for i, s in enumerate(rows):
        prev = rows[i - 1] if i else None
        dt = s["t"] - prev["t"] if prev else 0
        out.append({
            "min": s["t"] / 60,
            "rss": mib(s["rss_kib"]),
            "fds": s["fds"],
            "threads": s["threads"],
            "cpu": (s["cpu_s"] - prev["cpu_s"]) / dt * 100 if prev and dt else None,
            "rps": (s["requests"] - prev["requests"]) / dt if prev and dt else None,
            "requests": s["requests"],
            "errors": s["errors"],
            "tokens": s["tokens"],
            "tokens_expected": s["tokens_expected"],
            "revocations": s["revocations"],
            "revocations_expected": s["revocations_expected"],
            "files_mib": (s["db_bytes"] + s["wal_bytes"]) / 1048576,
            "misses": (s["gw_validation_cache_misses"] - prev["gw_validation_cache_misses"])
            if prev else None,
            "demand": s["cache_demand"],
            "reloads": s["reloads"]["done"],
        })
    return out


def extremes(samples):
    keys = ("rss_kib", "fds", "threads", "tokens", "revocations")
    first, last = samples[0], samples[-1]
    top = {k: max(s[k] for s in samples) for k in keys}
    top["files"] = max(s["db_bytes"] + s["wal_bytes"] for s in samples)
    return first, last, top


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_table(doc):
    rows = minute_rows(doc["samples"])
    print(f"\n{'min':>5} {'RSS MiB':>8} {'fds':>5} {'thr':>4} {'CPU%':>5} {'req/s':>6} "
          f"{'requests':>9} {'err':>4} {'tokens':>7} {'expected':>13} {'revoc':>6} "
          f"{'expected':>11} {'db+wal MiB':>10} {'misses/min':>10} {'demand':>7} {'reloads':>7}")
    for r in rows:
        print(f"{r['min']:>5.1f} {r['rss']:>8.1f} {r['fds']:>5} {r['threads']:>4} "
              f"{fmt(r['cpu'], '.0f'):>5} {fmt(r['rps'], '.0f'):>6} {r['requests']:>9,} "
              f"{r['errors']:>4} {r['tokens']:>7,} "
              f"{'%d..%d' % tuple(r['tokens_expected']):>13} {r['revocations']:>6,} "
              f"{'%d..%d' % tuple(r['revocations_expected']):>11} {r['files_mib']:>10.2f} "
              f"{fmt(r['misses'], ',.0f'):>10} {r['demand']:>7,} {r['reloads']:>7}")
    first, last, top = extremes(doc["samples"])
    for name, s in (("first", first), ("last", last)):
        print(f"{name:>5} {mib(s['rss_kib']):>8.1f} {s['fds']:>5} {s['threads']:>4} "
              f"{'':>5} {'':>6} {s['requests']:>9,} {s['errors']:>4} {s['tokens']:>7,} "
              f"{'':>13} {s['revocations']:>6,} {'':>11} "
              f"{(s['db_bytes'] + s['wal_bytes']) / 1048576:>10.2f}")
    print(f"{'max':>5} {mib(top['rss_kib']):>8.1f} {top['fds']:>5} {top['threads']:>4} "
          f"{'':>5} {'':>6} {'':>9} {'':>4} {top['tokens']:>7,} {'':>13} "
          f"{top['revocations']:>6,} {'':>11} {top['files'] / 1048576:>10.2f}")


def print_counts(doc):
    print(f"\n{'request':34s} {'answer':22s} {'count':>9s}")
    for (name, outcome), v in sorted(doc["counts"].items()):
        mark = "" if outcome in EXPECTED[name] else "   <- ERROR"
        refusal = "  (expected refusal)" if name in EXPECTED_REFUSALS and not mark else ""
        print(f"{name:34s} {outcome:22s} {v:>9,}{mark}{refusal}")


def print_verdicts(checks):
    print()
    for c in checks:
        tag = "PASS" if c["ok"] else ("N/A " if c["ok"] is None else "FAIL")
        print(f"{tag}  {c['name']}: {c['measured']}  (limit {c['limit']})")


def markdown(doc):
    setup, samples = doc["setup"], doc["samples"]
    lines = [
        f"Soak of {doc['when']}, commit {setup['commit']}: {samples[-1]['t'] / 60:.3g} min, "
        f"{'(interrupted) ' if doc.get('interrupted') else ''}"
        f"{doc['requests']:,} requests at {setup['rate']:.0f}/s target "
        f"({samples[-1]['requests'] / max(samples[-1]['t'], 1):.0f}/s achieved), "
        f"{doc['errors']} errors; SIGHUP every {setup['reload_every_s']:g} s "
        f"({sum(e['outcome'] == 'done' for e in doc['reloads'])} reloads done of "
        f"{len(doc['reloads'])}); tollgate {setup['gateway_threads']} thread(s) on core "
        f"{h.PROXY_CPU}, `sync: full`, access tokens {ACCESS_LIFETIME} s, refresh tokens "
        f"{REFRESH_LIFETIME} s, purge every {PURGE_INTERVAL} s, validation cache "
        f"{VALIDATION_CACHE['max_entries']:,} entries.",
        "",
        "| minute | RSS MiB | open fds | store tokens (expected) | revocations (expected) "
        "| db + wal MiB | req/s | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in minute_rows(samples):
        lines.append(
            f"| {r['min']:.3g} | {r['rss']:.1f} | {r['fds']} | {r['tokens']:,} "
            f"({r['tokens_expected'][0]:,}–{r['tokens_expected'][1]:,}) | {r['revocations']:,} "
            f"({r['revocations_expected'][0]:,}–{r['revocations_expected'][1]:,}) | "
            f"{r['files_mib']:.2f} | {fmt(r['rps'], ',.0f')} | {r['errors']} |")
    first, last, top = extremes(samples)
    lines.append(f"| max | {mib(top['rss_kib']):.1f} | {top['fds']} | {top['tokens']:,} | "
                 f"{top['revocations']:,} | {top['files'] / 1048576:.2f} | | |")
    lines += ["", "| check | measured | limit | |", "|---|---|---|---|"]
    for c in doc["checks"]:
        tag = "met" if c["ok"] else ("not measurable" if c["ok"] is None else "**missed**")
        lines.append(f"| {c['name']} | {c['measured']} | {c['limit']} | {tag} |")
    return "\n".join(lines) + "\n"


def write_csv(path, samples):
    flat = []
    for s in samples:
        row = {k: v for k, v in s.items() if k not in ("gauges", "reloads", "tokens_expected",
                                                         "revocations_expected")}
        row["tokens_expected_min"], row["tokens_expected_max"] = s["tokens_expected"]
        row["revocations_expected_min"], row["revocations_expected_max"] = \
            s["revocations_expected"]
        row["reloads_sent"], row["reloads_done"] = s["reloads"]["sent"], s["reloads"]["done"]
        for k, v in s["gauges"].items():
            row[k] = v
        flat.append(row)
    keys = []
    for row in flat:
        keys += [k for k in row if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(flat)


def write_plot(path, samples):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t = [s["t"] / 60 for s in samples]
    fig, ax = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    ax[0].plot(t, [mib(s["rss_kib"]) for s in samples])
    ax[0].set_ylabel("RSS MiB")
    ax[1].plot(t, [s["fds"] for s in samples])
    ax[1].set_ylabel("open fds")
    ax[2].plot(t, [s["tokens"] for s in samples], label="token rows")
    ax[2].fill_between(t, [s["tokens_expected"][0] for s in samples],
                       [s["tokens_expected"][1] for s in samples], alpha=0.3, label="expected")
    ax[2].plot(t, [s["revocations"] for s in samples], label="revocation rows")
    ax[2].legend()
    ax[2].set_ylabel("store rows")
    ax[3].plot(t, [(s["db_bytes"] + s["wal_bytes"]) / 1048576 for s in samples])
    ax[3].set_ylabel("db + wal MiB")
    ax[3].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def report(doc, out_dir):
    doc["checks"] = verdicts(doc)
    print_table(doc)
    print_counts(doc)
    if doc["error_examples"]:
        print("\nfirst unexpected answers:")
        for e in doc["error_examples"][:10]:
            print(f"  t={e['t']}s {e['request']} {e['outcome']}: {e['body'][:160]!r}")
    print_verdicts(doc["checks"])
    stamp = doc["stamp"]
    base = os.path.join(out_dir, f"soak-{stamp}")
    # JSON keys must be strings: counts by "request answer".
    saved = dict(doc)
    saved["counts"] = {f"{k[0]}|{k[1]}": v for k, v in doc["counts"].items()}
    for path in (base + ".json", os.path.join(out_dir, "latest.json")):
        with open(path, "w") as f:
            json.dump(saved, f, indent=1)
    write_csv(base + ".csv", doc["samples"])
    md = markdown(doc)
    with open(base + ".md", "w") as f:
        f.write(md)
    plotted = write_plot(base + ".png", doc["samples"])
    print(f"\nJSON: {base}.json\nCSV: {base}.csv\nMarkdown: {base}.md"
          + (f"\nPNG: {base}.png" if plotted else "\n(no PNG: matplotlib is not installed)"))
    failed = [c for c in doc["checks"] if c["ok"] is False]
    print(f"\nverdict: {'FAIL' if failed else 'PASS'} ({len(failed)} check(s) failed, "
          f"{doc['errors']} errors)")
    return 1 if failed or doc["errors"] else 0


def load_doc(path):
    with open(path) as f:
        doc = json.load(f)
    doc["counts"] = {tuple(k.split("|", 1)): v for k, v in doc["counts"].items()}
    return doc


# ---------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--sample", type=float, default=10, help="seconds between samples")
    ap.add_argument("--reload-every", type=float, default=60, help="seconds between SIGHUPs")
    ap.add_argument("--rate", type=float, default=300, help="requests per second in all")
    ap.add_argument("--workers", type=int, default=8, help="client threads (connections)")
    ap.add_argument("--threads", type=int, default=1, help="tollgate worker threads")
    ap.add_argument("--out", default=os.path.join(h.WORK, "soak"),
                    help="directory for configs, state, logs and results")
    ap.add_argument("--markdown", metavar="JSON",
                    help="print the Markdown table of a finished run and exit")
    args = ap.parse_args()
    if args.markdown:
        doc = load_doc(args.markdown)
        print(markdown(doc), end="")
        return 0
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("the soak needs two cores: one for tollgate, one for the load")
    if not os.path.exists(h.TOLLGATE):
        raise SystemExit(f"{h.TOLLGATE} is missing: cargo build --release --locked --bin tollgate")
    h.WORK = os.path.abspath(args.out)
    os.makedirs(h.WORK, exist_ok=True)
    h.raise_nofile()
    os.sched_setaffinity(0, {int(h.LOAD_CPU)})
    # Ctrl-C and SIGTERM end the run the same way: report what was sampled, stop by PID.
    def terminate(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    procs = []
    stop = threading.Event()
    try:
        doc = run(args, procs, stop)
    except KeyboardInterrupt:
        print("\ninterrupted before the load started", file=sys.stderr)
        return 130
    finally:
        stop.set()
        for p in reversed(procs):
            p.stop()
    if not doc["samples"]:
        print("no sample was taken", file=sys.stderr)
        return 1
    code = report(doc, h.WORK)
    if doc["aborted"]:
        print(f"aborted: {doc['aborted']}")
        return 1
    return 130 if doc["interrupted"] and not code else code


def run(args, procs, stop):
    state = os.path.join(h.WORK, "state")
    shutil.rmtree(state, ignore_errors=True)
    os.makedirs(state)
    os.makedirs(os.path.join(h.WORK, "nginx-tmp"), exist_ok=True)
    ports = {k: h.free_port() for k in ("up", "tg", "tgm")}
    h.write("upstream.conf", h.nginx_upstream_conf(ports["up"]))
    h.start_nginx_upstream(procs)
    h.wait_http(ports["up"])
    secret_hash = subprocess.run([h.TOLLGATE, "hash-secret"], input=SECRET,
                                 capture_output=True, text=True, check=True).stdout.strip()
    upstreams_file = os.path.join(h.WORK, "upstreams.yaml")

    def write_upstreams(generation):
        write_atomic(upstreams_file, upstreams(ports["up"], secret_hash, generation))

    write_upstreams(0)
    conf = h.write("tollgate.yaml", gateway_conf(ports["tg"], ports["tgm"], upstreams_file,
                                                 state, args.threads))
    gw = h.Proc("tollgate", [h.TOLLGATE, "-c", conf], h.PROXY_CPU)
    procs.append(gw)
    h.wait_http(ports["tg"], "/.well-known/jwks.json")
    with open(f"/proc/{gw.p.pid}/comm") as f:
        if f.read().strip() != "tollgate":
            raise SystemExit(f"pid {gw.p.pid} is not tollgate")
    db = os.path.join(state, "tollgate.db")

    counts, pools, ledger = Counts(), Pools(), Ledger()
    t0 = time.monotonic()
    workers = [Worker(i, ports["tg"], args.rate / args.workers, stop, counts, pools, ledger,
                      t0) for i in range(args.workers)]
    reloader = (Reloader(gw, ports["tg"], args.reload_every, stop, counts, write_upstreams, t0)
                if args.reload_every > 0 else None)
    warmup = max(args.minutes * 60 / 6,
                 max(REFRESH_LIFETIME, VALIDATION_CACHE["ttl"]) + PURGE_INTERVAL + LEEWAY)
    commit = subprocess.run(["git", "-C", h.ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print(f"soak: {args.minutes:g} min at {args.rate:g} req/s ({args.workers} connections), "
          f"sample every {args.sample:g} s, SIGHUP every {args.reload_every:g} s; tollgate pid "
          f"{gw.p.pid} on 127.0.0.1:{ports['tg']} (metrics :{ports['tgm']}), warm-up "
          f"{warmup:.0f} s; work dir {h.WORK}", flush=True)
    if args.minutes < 15:
        print("note: a run this short gives indicative verdicts only (warm-up and the "
              "windows compared overlap)", flush=True)

    samples = []
    interrupted = False
    aborted = None
    for w in workers:
        w.start()
    if reloader:
        reloader.start()
    end = t0 + args.minutes * 60
    next_sample = t0
    try:
        while True:
            now = time.monotonic()
            if now >= next_sample or now >= end:
                if not gw.alive():
                    aborted = f"tollgate exited ({gw.p.returncode}); see {gw.log_path}"
                    print(aborted, flush=True)
                    break
                s = take_sample(t0, gw, ports["tgm"], db, counts, pools, ledger, reloader)
                samples.append(s)
                print(f"t={s['t']:>6.0f}s RSS {mib(s['rss_kib']):6.1f} MiB  fds {s['fds']:>4} "
                      f"({s['fd_sockets']} sockets)  "
                      f"tokens {s['tokens']:>6} (expected {s['tokens_expected'][0]}.."
                      f"{s['tokens_expected'][1]})  revocations {s['revocations']:>5} "
                      f"({s['revocations_expected'][0]}..{s['revocations_expected'][1]})  "
                      f"db+wal {(s['db_bytes'] + s['wal_bytes']) / 1048576:6.2f} MiB  "
                      f"requests {s['requests']:>8}  errors {s['errors']}  reloads "
                      f"{s['reloads']['done']}/{s['reloads']['sent']}", flush=True)
                if now >= end:
                    break
                next_sample += args.sample
            time.sleep(max(0.0, min(next_sample, end) - time.monotonic()))
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: reporting what was sampled", flush=True)
    stop.set()
    for w in workers:
        w.join(15)
    if reloader:
        reloader.join(15)
    requests, errors, by = counts.snapshot()
    final_metrics = None
    if gw.alive():
        series = h.scrape_metrics(ports["tgm"])
        final_metrics = {
            "gw_5xx": metric_sum(series, "tollgate_requests_total", status="5xx"),
            "gw_tokens_issued": metric_sum(series, "tollgate_tokens_issued_total"),
            "gw_token_endpoint_errors": metric_sum(series,
                                                   "tollgate_token_endpoint_errors_total"),
            "gw_store_errors": metric_sum(series, "tollgate_store_errors_total"),
            "gw_validations_revoked": metric_sum(series, "tollgate_token_validations_total",
                                                 outcome="revoked"),
            "gw_requests": metric_sum(series, "tollgate_requests_total"),
        }
    return {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "stamp": datetime.datetime.now().strftime("%Y%m%d-%H%M%S"),
        "interrupted": interrupted,
        "aborted": aborted,
        "setup": {
            "commit": commit, "minutes": args.minutes, "sample_s": args.sample,
            "reload_every_s": args.reload_every, "rate": args.rate, "workers": args.workers,
            "gateway_threads": args.threads, "warmup_s": warmup,
            "proxy_cpu": h.PROXY_CPU, "load_cpu": h.LOAD_CPU, "cpus": os.cpu_count(),
            "access_lifetime_s": ACCESS_LIFETIME, "refresh_lifetime_s": REFRESH_LIFETIME,
            "leeway_s": LEEWAY, "purge_interval_s": PURGE_INTERVAL,
            "validation_cache": VALIDATION_CACHE, "client_auth_cache": CLIENT_AUTH_CACHE,
            "mix": {k: v[0] for k, v in MIX.items()},
        },
        "requests": requests,
        "errors": errors,
        "counts": by,
        "error_examples": counts.examples,
        "final_metrics": final_metrics,
        "dropped_refresh_chains": pools.dropped_chains,
        "reloads": reloader.events if reloader else [],
        "samples": samples,
    }


if __name__ == "__main__":
    sys.exit(main())
