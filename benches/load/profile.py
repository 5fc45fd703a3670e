#!/usr/bin/env python3
"""Per-request callgrind profile: instructions per request by function, inclusive and self.

  python3 benches/load/profile.py [--bin-dir target/release] [--top 60]

Runs the bare Pingora proxy and tollgate's unprotected route (and, with --protected, the
protected route) under callgrind twice each, with 500 and 500 + N keep-alive requests over
one connection (as the load harness counts instructions), and prints for every function
(callgrind_annotate --inclusive=yes, and self cost) the difference of the two runs divided
by N: start-up and shut-down cancel, what is left is the cost of one request. Functions
inlined by LTO are counted in the function they were inlined into. The raw callgrind files
(--dump-instr=yes, for callgrind_annotate or kcachegrind) stay in target/bench-profile/.
"""

import argparse
import glob
import os
import re
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

harness.WORK = os.path.join(harness.ROOT, "target", "bench-profile")
WORK = harness.WORK

LINE = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(.*?)\s*$")


def annotate(out_file, inclusive):
    """{file:function: instructions} from callgrind_annotate."""
    argv = ["callgrind_annotate", "--auto=no", "--threshold=100",
            f"--inclusive={'yes' if inclusive else 'no'}", out_file]
    text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    # The function table follows the header line "Ir  file:function" and its rule.
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.rstrip().endswith("file:function"))
    costs = {}
    for line in lines[start + 2:]:
        m = LINE.match(line)
        if not m:
            break
        name = re.sub(r"\s+\[[^\]]*\]$", "", m.group(2))
        costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def short(name):
    """`…/pingora-core-0.9.1/src/x.rs:fn` → `pingora-core-0.9.1/src/x.rs:fn`."""
    path, _, func = name.partition(":")
    parts = path.split("/")
    for i, part in enumerate(parts):
        if part == "src" and i > 0:
            path = "/".join(parts[i - 1:])
            break
    return f"{path}:{func}"


def run_twice(name, argv, port, path, token, ready, n_low, n_high, tls=False):
    files = []
    for n in (n_low, n_high):
        out = os.path.join(WORK, f"callgrind.{name}.{n}")
        for f in glob.glob(out + "*"):
            os.remove(f)
        p = harness.Proc(f"callgrind-{name}-{n}",
                         ["valgrind", "--tool=callgrind", "--dump-instr=yes",
                          f"--callgrind-out-file={out}", *argv], harness.PROXY_CPU)
        if tls:
            # Ready once the cleartext listener of the same process answers.
            harness.wait_http(tls[1], ready, timeout=180)
            harness.requests_over_one_connection(port, path, n, token, tls=True)
        else:
            harness.wait_http(port, ready, timeout=180)
            harness.requests_over_one_connection(port, path, n, token)
        p.stop(signal.SIGTERM, timeout=120)
        files.append(out)
    return files


def report(name, files, n, top):
    total = (harness.callgrind_total(files[1]) - harness.callgrind_total(files[0])) / n
    print(f"\n== {name}: {total:,.0f} instructions/request")
    for inclusive in (True, False):
        low, high = annotate(files[0], inclusive), annotate(files[1], inclusive)
        diff = {k: (high.get(k, 0) - low.get(k, 0)) / n for k in set(low) | set(high)}
        rows = sorted(diff.items(), key=lambda kv: -kv[1])[:top]
        print(f"-- {'inclusive' if inclusive else 'self'}, instructions/request")
        for k, v in rows:
            print(f"{v:10.0f} {100 * v / total:5.1f}%  {short(k)[:160]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default=os.path.join(harness.ROOT, "target", "release"),
                    help="directory with tollgate and examples/bare (or bare)")
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--top", type=int, default=60)
    ap.add_argument("--protected", action="store_true")
    ap.add_argument("--bare-only", action="store_true")
    ap.add_argument("--tls", action="store_true",
                    help="also tollgate's protected route over one TLS 1.3 keep-alive "
                         "connection (ECDSA P-256 certificate), beside the cleartext one")
    ap.add_argument("--lowercase", action="store_true",
                    help="header names without their case: bare --lowercase-header-names, "
                         "tollgate server.header_case: lowercase")
    args = ap.parse_args()

    if args.tls:
        args.protected = True
    bare_bin = os.path.join(args.bin_dir, "examples", "bare")
    if not os.path.exists(bare_bin):
        bare_bin = os.path.join(args.bin_dir, "bare")
    tollgate_bin = os.path.join(args.bin_dir, "tollgate")

    os.makedirs(os.path.join(WORK, "nginx-tmp"), exist_ok=True)
    procs = []
    try:
        ports = {k: harness.free_port() for k in ("upstream", "bare", "tg", "tg_m", "tg_tls")}
        up = ports["upstream"]
        harness.write("upstream.conf", harness.nginx_upstream_conf(up))
        procs.append(harness.Proc("upstream", ["nginx", "-p", WORK, "-e", "stderr", "-c",
                                               os.path.join(WORK, "upstream.conf")],
                                  harness.LOAD_CPU))
        harness.wait_http(up)
        n_low, n_high = 500, 500 + args.requests
        token = "x" * 300
        runs = [("bare", [bare_bin, "--listen", f"127.0.0.1:{ports['bare']}", "--upstream",
                          f"127.0.0.1:{up}", "--pid-file", os.path.join(WORK, "bare.pid")]
                 + (["--lowercase-header-names"] if args.lowercase else []),
                 ports["bare"], "/api/x", "/")]
        if not args.bare_only:
            harness.es256_key()
            secret_hash = subprocess.run([tollgate_bin, "hash-secret"], input=harness.SECRET,
                                         capture_output=True, text=True,
                                         check=True).stdout.strip()
            upstreams = harness.write("upstreams.yaml",
                                      harness.tollgate_upstreams(up, secret_hash))
            conf_text = harness.tollgate_conf(
                "tollgate", ports["tg"], ports["tg_m"], upstreams,
                "  header_case: lowercase\n" if args.lowercase else "")
            if args.tls:
                cert, key = harness.make_cert(WORK)
                conf_text = conf_text.replace(
                    "listen:\n", f"listen:\n  - addr: 127.0.0.1:{ports['tg_tls']}\n"
                                 f"    tls: {{ cert: {cert}, key: {key} }}\n", 1)
            conf = harness.write("tollgate.yaml", conf_text)
            tg = [tollgate_bin, "-c", conf]
            settle = harness.Proc("tollgate-settle", tg, harness.PROXY_CPU)
            harness.wait_http(ports["tg"], "/open/")
            token = harness.post_form(ports["tg"], "/credential/jwt",
                                      "grant_type=client_credentials",
                                      f"bench:{harness.SECRET}")["access_token"]
            settle.stop()
            runs.append(("unprotected", tg, ports["tg"], "/open/x", "/open/"))
            if args.protected:
                runs.append(("protected", tg, ports["tg"], "/api/x", "/open/"))
            if args.tls:
                runs.append(("protected-tls", tg, ports["tg_tls"], "/api/x", "/open/"))
        for name, argv, port, path, ready in runs:
            tls = (True, ports["tg"]) if name.endswith("-tls") else False
            files = run_twice(name, argv, port, path, token, ready, n_low, n_high, tls)
            report(name, files, args.requests, args.top)
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    sys.exit(main())
