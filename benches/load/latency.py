#!/usr/bin/env python3
"""Latency under a fixed offered load: tollgate's protected route (a Bearer JWT validated,
scope bench:read) against nginx's plain proxy_pass to the same upstream, both sent the same
fixed request rate, in interleaved rounds (tollgate, nginx, tollgate, nginx ...).

The rate: half of nginx's maximum throughput, measured first in the same run with wrk
(-t1 -c<connections>, --max-duration s), unless --rate is given. Tollgate's maximum is
measured the same way, to show what share of it that rate is (past about 90 %, a warning:
its queue then grows through the run and its latencies are the run's length). The target:
p99 of the protected route <= 1.5 x nginx's p99 at the same offered load, as the median
of the per-round ratios.

The fixed-rate client is oha (`cargo install --locked oha`; scripts/bench.sh installs it)
with -q <rate> --latency-correction: each request's latency runs from the time it was
scheduled, not from when a connection became free to send it, so a stall of the server
shows up in the latencies of every request that queued behind it (no coordinated
omission). oha runs one tokio worker thread. Its pacing task wakes on tokio's 1 ms timer,
so the requests of each millisecond leave together (rate / 1000 of them); latency is
counted from that wake-up. A client that cannot keep the rate would offer less than
asked: every run is checked (responses within 1 % of rate x duration), and a calibration
run first sends the same rate to a static nginx on the proxy core (the client alone).

Layout (2 cores), as the harness: the proxy under test on core 0 (nginx 1 worker /
tollgate 1 worker thread); the nginx upstream and the client (taskset) on core 1. Busy
time of both cores and the client's CPU time are recorded per run (the machine may be
shared with other work: a busy core 1 means a client or upstream short of CPU).

Run through `scripts/bench.sh --latency [--rounds 3 --duration 10 --rate N]`. Results: a
table on stdout, JSON in target/bench/latency-latest.json.
"""

import argparse
import datetime
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

OUT = os.path.join(h.WORK, "latency-latest.json")
h.WORK = os.path.join(h.WORK, "latency")
TARGET_P99_RATIO = 1.5
KEEP_UP = 0.99  # a run counts as keeping the rate when it got >= 99 % of rate x duration
PCTS = ("p50", "p90", "p99", "p99.9", "p99.99")
TG, NGINX = "tollgate protected", "nginx proxy_pass"


def oha_version():
    out = subprocess.run(["oha", "--version"], capture_output=True, text=True)
    return out.stdout.strip() or "oha (version unknown)"


def core_jiffies():
    """{core: (busy, steal, total)} jiffies of the proxy and load cores, from /proc/stat
    (busy: user, nice, system, irq, softirq; steal: time the hypervisor gave elsewhere)."""
    cores = {f"cpu{h.PROXY_CPU}": "proxy_core", f"cpu{h.LOAD_CPU}": "load_core"}
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in cores:
                v = [int(x) for x in parts[1:]]
                out[cores[parts[0]]] = (sum(v[:3]) + v[5] + v[6], v[7], sum(v[:8]))
    return out


def oha(url, rate, conns, duration, headers=()):
    """One fixed-rate run of oha on the load core: rates, latency percentiles (ms), errors,
    the client's CPU share and both cores' busy share over the run."""
    argv = ["taskset", "-c", h.LOAD_CPU, "oha", "--no-tui", "--output-format", "json",
            "--worker-threads", "1", "-z", f"{duration}s", "-c", str(conns), "-q", str(rate),
            "--latency-correction", "-t", "10s"]
    for hd in headers:
        argv += ["-H", hd]
    argv.append(url)
    ru0, cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN), core_jiffies()
    p = subprocess.run(argv, capture_output=True, text=True)
    ru1, cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN), core_jiffies()
    if p.returncode != 0:
        raise SystemExit(f"oha failed ({p.returncode}): {p.stderr.strip()}\n{' '.join(argv)}")
    d = json.loads(p.stdout)
    codes = {k: int(v) for k, v in d["statusCodeDistribution"].items()}
    answered = sum(codes.values())
    # Requests still in flight at the deadline are aborted by oha: not errors of the server.
    errors = {k: v for k, v in d["errorDistribution"].items() if "deadline" not in k.lower()}
    lat = d["latencyPercentiles"]
    res = {
        "offered_rps": rate,
        "achieved_rps": answered / duration,
        "requests": answered,
        "non_200": answered - codes.get("200", 0),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "client_cpu": (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / duration,
        "max_ms": d["summary"]["slowest"] * 1000 if d["summary"]["slowest"] else None,
        "mean_ms": d["summary"]["average"] * 1000 if d["summary"]["average"] else None,
        "histogram_ms": {f"{float(k) * 1000:.3f}": v
                         for k, v in d["responseTimeHistogram"].items()},
    }
    for pct in PCTS:
        v = lat.get(pct)
        res[f"{pct}_ms"] = v * 1000 if v is not None else None
    for core, (busy1, steal1, total1) in cpu1.items():
        busy0, steal0, total0 = cpu0[core]
        res[f"{core}_busy"] = (busy1 - busy0) / max(total1 - total0, 1)
        res[f"{core}_steal"] = (steal1 - steal0) / max(total1 - total0, 1)
    res["keeps_rate"] = res["achieved_rps"] >= KEEP_UP * rate
    return res


def show(label, r):
    f = lambda v: f"{v:7.3f}" if v is not None else "      -"
    return (f"{label:20s} offered {r['offered_rps']:>6}/s achieved {r['achieved_rps']:>8.0f}/s "
            f"({100 * r['achieved_rps'] / r['offered_rps']:5.1f} %{'' if r['keeps_rate'] else ' SHORT'})"
            f"  p50 {f(r['p50_ms'])}  p90 {f(r['p90_ms'])}  p99 {f(r['p99_ms'])}  "
            f"p99.9 {f(r['p99.9_ms'])}  max {f(r['max_ms'])} ms  "
            f"client cpu {100 * r['client_cpu']:3.0f} %  core{h.PROXY_CPU} "
            f"{100 * r['proxy_core_busy']:3.0f} %  core{h.LOAD_CPU} {100 * r['load_core_busy']:3.0f} %"
            + "".join(f"  core{c} steal {100 * r[k]:.0f} %" for c, k in
                      ((h.PROXY_CPU, "proxy_core_steal"), (h.LOAD_CPU, "load_core_steal"))
                      if r[k] >= 0.01)
            + (f"  NON-200 {r['non_200']}" if r["non_200"] else "")
            + (f"  ERRORS {r['errors']} {r['error_kinds']}" if r["errors"] else ""))


def status_of(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per gateway per round")
    ap.add_argument("--rate", type=int, default=None,
                    help="requests/s offered to both (default: half of nginx's maximum)")
    ap.add_argument("--connections", type=int, default=50,
                    help="connections of oha, and of wrk for nginx's maximum")
    ap.add_argument("--max-duration", type=int, default=5,
                    help="seconds of the wrk run measuring nginx's maximum")
    args = ap.parse_args()
    if args.rate is not None and args.rate <= 0:
        ap.error("--rate must be positive")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: one for the proxy, one for load")
    for tool in ("oha", "wrk", "nginx", "taskset", "openssl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (scripts/bench.sh --latency installs it)")
    if not os.access(h.TOLLGATE, os.X_OK):
        raise SystemExit(f"no gateway binary at {h.TOLLGATE} (build it, or set TOLLGATE_BIN)")
    shutil.rmtree(h.WORK, ignore_errors=True)
    os.makedirs(os.path.join(h.WORK, "nginx-tmp"))
    procs = []
    # A SIGTERM stops what we started too (the finally below), as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        doc = run(args, procs)
    finally:
        for p in reversed(procs):
            p.stop()
    report(args, doc)
    return 0


def run(args, procs):
    ports = {k: h.free_port() for k in ("upstream", "nginx", "tollgate", "tollgate_m", "static")}
    up = ports["upstream"]
    h.write("upstream.conf", h.nginx_upstream_conf(up))
    h.start_nginx_upstream(procs)
    h.es256_key()
    secret_hash = h.bench_secret_hash()
    h.write("nginx.conf", h.nginx_proxy_conf(ports["nginx"], up, "nginx"))
    procs.append(h.Proc("nginx", ["nginx", "-p", h.WORK, "-e", "stderr", "-c",
                                  os.path.join(h.WORK, "nginx.conf")], h.PROXY_CPU))
    # The client's calibration target: the upstream's config, served from the proxy core.
    h.write("static.conf", h.nginx_upstream_conf(ports["static"])
            .replace("upstream.pid", "static.pid").replace("upstream-error", "static-error"))
    procs.append(h.Proc("static", ["nginx", "-p", h.WORK, "-e", "stderr", "-c",
                                   os.path.join(h.WORK, "static.conf")], h.PROXY_CPU))
    upstreams = h.write("upstreams.yaml", h.tollgate_upstreams(up, secret_hash))
    tg_conf = h.write("tollgate.yaml", h.tollgate_conf("tollgate", ports["tollgate"],
                                                       ports["tollgate_m"], upstreams))
    procs.append(h.Proc("tollgate", [h.TOLLGATE, "-c", tg_conf], h.PROXY_CPU))
    for port in (up, ports["nginx"], ports["static"]):
        h.wait_http(port)
    h.wait_http(ports["tollgate"], "/open/")

    jwt = h.post_form(ports["tollgate"], "/credential/jwt", "grant_type=client_credentials",
                      f"bench:{h.SECRET}")["access_token"]
    bearer = f"Authorization: Bearer {jwt}"
    urls = {TG: f"http://127.0.0.1:{ports['tollgate']}/api/x",
            NGINX: f"http://127.0.0.1:{ports['nginx']}/api/x"}
    # The protected route must really check the token: 200 with it, 401 without.
    with_token = status_of(urls[TG], {"Authorization": f"Bearer {jwt}"})
    without = status_of(urls[TG])
    if (with_token, without) != (200, 401):
        raise SystemExit(f"protected route: {with_token} with the token, {without} without "
                         f"(expected 200, 401); log {procs[-1].log_path}")

    # Every proxy gets the same request, bearer token included (nginx passes it on unread).
    for url in urls.values():
        h.wrk(url, args.connections, 1, headers=[bearer])
    maxima = {}
    for name in (NGINX, TG):
        res = h.wrk(urls[name], args.connections, args.max_duration, headers=[bearer])
        res.pop("raw", None)
        maxima[name] = res
        print(f"maximum {name:20s} {res['rps']:>9.0f} req/s (wrk -t1 -c{args.connections}, "
              f"{args.max_duration} s, p99 {res['p99_ms'] or float('nan'):.2f} ms)"
              + (f"  NON-2XX {res['non_2xx']}" if res["non_2xx"] else ""), flush=True)
    if not maxima[NGINX]["rps"]:
        raise SystemExit("wrk measured no throughput on nginx")
    rate = args.rate or int(maxima[NGINX]["rps"] / 2)
    print(f"offered rate: {rate} req/s "
          + ("(--rate)" if args.rate else "(half of nginx's maximum)")
          + f" = {100 * rate / maxima[TG]['rps']:.0f} % of tollgate's maximum", flush=True)
    if rate >= 0.9 * maxima[TG]["rps"]:
        print("WARNING: that is at or past tollgate's maximum: its queue will grow through "
              "each run, and its latencies measure the run's length, not the proxy "
              "(--rate sets a lower rate)", flush=True)

    version = oha_version()
    calib = oha(f"http://127.0.0.1:{ports['static']}/", rate, args.connections,
                min(args.duration, 5))
    print(f"client {version}, 1 worker thread on core {h.LOAD_CPU}, alone against a static "
          f"nginx on core {h.PROXY_CPU}:", flush=True)
    print("  " + show("static nginx", calib), flush=True)
    if not calib["keeps_rate"]:
        print(f"  WARNING: the client alone got {calib['achieved_rps']:.0f}/s of {rate}/s: "
              "it cannot keep this rate on one core; the figures below are not valid",
              flush=True)
    for p in procs:
        if p.name == "static":
            p.stop()
            procs.remove(p)
            break

    rounds = {TG: [], NGINX: []}
    for r in range(args.rounds):
        for name in (TG, NGINX):
            res = oha(urls[name], rate, args.connections, args.duration, [bearer])
            rounds[name].append(res)
            print(f"round {r + 1} " + show(name, res), flush=True)
        a, b = rounds[TG][-1]["p99_ms"], rounds[NGINX][-1]["p99_ms"]
        print(f"round {r + 1} p99 tollgate / nginx: "
              f"{a / b if a and b else float('nan'):.3f}", flush=True)
    return {"rate": rate, "rate_source": "--rate" if args.rate else "half of nginx's maximum",
            "client": version, "maxima": maxima, "calibration": calib, "rounds": rounds}


def paired(rounds, key):
    return [x[key] / y[key] if x.get(key) and y.get(key) else None
            for x, y in zip(rounds[TG], rounds[NGINX])]


def report(args, doc):
    rounds = doc["rounds"]
    print()
    print(f"offered {doc['rate']} req/s ({doc['rate_source']}), {args.connections} connections,"
          f" {args.duration} s per run, {args.rounds} rounds; medians over rounds (ms)")
    print(f"{'':20s} {'achieved/s':>10s} " + " ".join(f"{p:>8s}" for p in PCTS)
          + f" {'max':>8s}")
    summary = {}
    for name, rs in rounds.items():
        s = {k: h.median_or_none(r[k] for r in rs)
             for k in ["achieved_rps", "max_ms"] + [f"{p}_ms" for p in PCTS]}
        s["non_200"] = sum(r["non_200"] for r in rs)
        s["errors"] = sum(r["errors"] for r in rs)
        summary[name] = s
        f = lambda v: f"{v:8.3f}" if v is not None else "       -"
        print(f"{name:20s} {s['achieved_rps']:>10.0f} "
              + " ".join(f(s[f'{p}_ms']) for p in PCTS) + f" {f(s['max_ms'])}"
              + (f"  NON-200 {s['non_200']}" if s["non_200"] else "")
              + (f"  ERRORS {s['errors']}" if s["errors"] else ""))
    ratios = {p: paired(rounds, f"{p}_ms") for p in PCTS}
    medians = {p: h.median_or_none(v) for p, v in ratios.items()}
    print("tollgate / nginx, median of per-round ratios: "
          + "  ".join(f"{p} {medians[p]:.3f}" for p in PCTS if medians[p] is not None))
    print("per-round p99 ratios: "
          + " ".join(f"{x:.3f}" if x is not None else "-" for x in ratios["p99"]))

    runs = [r for rs in rounds.values() for r in rs]
    kept = sum(r["keeps_rate"] for r in runs)
    worst = min(r["achieved_rps"] / r["offered_rps"] for r in runs)
    calib = doc["calibration"]
    short = {name: sum(not r["keeps_rate"] for r in rs) for name, rs in rounds.items()}
    print(f"client ({doc['client']}): alone {100 * calib['achieved_rps'] / doc['rate']:.2f} % "
          f"of the rate at {100 * calib['client_cpu']:.0f} % of a core"
          + ("" if calib["keeps_rate"] else " -- SHORT: the client cannot keep this rate")
          + f"; in the rounds {kept} of {len(runs)} runs within {100 * (1 - KEEP_UP):.0f} % "
          f"of the offered rate (lowest {100 * worst:.2f} %)")
    if kept < len(runs):
        print("runs SHORT of the rate (the server or the client could not keep it; a server "
              "that cannot shows latencies growing to the run's length): "
              + ", ".join(f"{name} {n}" for name, n in short.items()))

    value = medians["p99"]
    ok = value is not None and value <= TARGET_P99_RATIO and kept == len(runs)
    print()
    print(f"{'target':36s} {'measured':>10s} {'target':>10s}")
    print(f"{'p99 protected / p99 nginx':36s} "
          f"{(f'{value:.3f}' if value is not None else '-'):>10s} "
          f"{'<= ' + str(TARGET_P99_RATIO):>10s}  {'ok' if ok else 'MISSED'}")

    out = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "setup": {
            "rounds": args.rounds, "duration_s": args.duration, "connections": args.connections,
            "max_duration_s": args.max_duration, "rate": doc["rate"],
            "rate_source": doc["rate_source"], "client": doc["client"],
            "client_flags": "--worker-threads 1 -q RATE --latency-correction",
            "proxy_cpu": h.PROXY_CPU, "load_cpu": h.LOAD_CPU, "cpus": os.cpu_count(),
            "tollgate_bin": h.TOLLGATE,
            "commit": subprocess.run(["git", "-C", h.ROOT, "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
        },
        "maxima": doc["maxima"],
        "client_calibration": calib,
        "summary": summary,
        "ratios_per_round": ratios,
        "ratios_median": medians,
        "client_kept_rate": {"runs": len(runs), "kept": kept, "lowest_fraction": worst,
                             "short_runs": short},
        "target": {"name": "p99 protected / p99 nginx", "value": value, "op": "<=",
                   "target": TARGET_P99_RATIO, "ok": ok},
        "rounds": rounds,
    }
    with open(OUT, "w") as f:
        json.dump(out, f, indent=2)
    print(f"\nJSON: {OUT}")


if __name__ == "__main__":
    sys.exit(main())
