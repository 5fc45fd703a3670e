#!/usr/bin/env python3
"""Markdown tables of a load-harness run, for the README's performance section.

  python3 benches/load/report_md.py [target/bench/latest.json]

Prints the scenario table, the floor table (throughput ratios per round and their median,
instructions per request) and the targets, from the JSON that harness.py wrote.
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def num(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "bench",
                                                             "latest.json")
    with open(path) as f:
        doc = json.load(f)
    setup = doc["setup"]
    print(f"Run of {doc['when']}, commit {setup['commit']}: {setup['rounds']} rounds × "
          f"{setup['duration_s']} s, wrk -c{setup['connections']}.")
    print()
    cg = doc.get("instructions_per_request") or {}
    print("| scenario | req/s (median) | p50 ms | p99 ms | rounds, req/s | instructions/request |")
    print("|---|---|---|---|---|---|")
    for name, s in doc["summary"].items():
        rounds = " / ".join(num(x) for x in s["per_round_rps"])
        instr = f"{cg[name] / 1000:.1f} k" if name in cg else ""
        print(f"| {name} | {num(s['rps'])} | {num(s['p50_ms'], 2)} | {num(s['p99_ms'], 2)} "
              f"| {rounds} | {instr} |")
    print()
    print("| ratio | req/s, median of rounds | per round | instructions/request | "
          "instructions over the second |")
    print("|---|---|---|---|---|")
    for name, r in doc["floor"].items():
        per_round = " / ".join(f"{x:.2f}" for x in r.get("rps_ratio_per_round", []))
        more = r.get("instructions_more")
        print(f"| {name} | {num(r['rps_ratio'], 3)} | {per_round} | "
              f"{num(r['instructions_ratio'], 3)} | "
              f"{'-' if more is None else f'{more / 1000:+.1f} k'} |")
    print()
    print("| target | measured | aim | |")
    print("|---|---|---|---|")
    for t in doc["targets"]:
        v = t["value"]
        shown = f"{v:.3f}" if isinstance(v, float) and v < 100 else f"{v:,.0f}"
        print(f"| {t['name']} | {shown} | {t['op']} {t['target']} | "
              f"{'met' if t['ok'] else '**missed**'} |")


if __name__ == "__main__":
    sys.exit(main())
