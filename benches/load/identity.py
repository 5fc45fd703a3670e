#!/usr/bin/env python3
"""What telling the upstream costs: the protected route with no identity headers, with five
(subject, client, scope, way in, one claim), and with five plus a phantom token instead of
the credential; and forward-auth decisions behind nginx (`auth_request`) against nginx
calling the upstream directly. Same run, interleaved rounds (A B C D E A B C D E ...),
then callgrind instructions per request for the three tollgate routes.

Run through `scripts/bench.sh --identity [--rounds N --duration S]`.

Layout (2 cores): the proxies under test on core 0 (tollgate; nginx; for forward auth,
nginx and tollgate's decision listener together, as they would share a host); wrk and
the upstream on core 1.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.WORK = os.path.join(h.WORK, "identity")

OFF = "{ subject: off, client_id: off, scope: off, method: off, issuer: off, credential: off }"
FIVE = "claims: { x-auth-aud: aud }"


def upstreams(up, secret_hash):
    route = f'upstream: {{ servers: ["127.0.0.1:{up}"] }}, auth: jwt'
    rules = 'rules: [{ methods: [GET], path: "/**", all_of: [bench:read] }]'
    return f"""apis:
  - {{ name: plain, prefix: /plain, {route}, {rules}, identity: {{ headers: {OFF} }} }}
  - {{ name: ident, prefix: /ident, {route}, {rules}, identity: {{ {FIVE} }} }}
  - {{ name: phantom, prefix: /phantom, {route}, {rules}, identity: {{ {FIVE}, credential: phantom }} }}
credentials:
  - {{ client_id: bench, client_secret_hash: "{secret_hash}", acl: [plain, ident, phantom], roles: [bench:read] }}
"""


def nginx_forward_auth_conf(port, upstream, decisions):
    return f"""
worker_processes 1;
daemon off;
pid {h.WORK}/front.pid;
error_log {h.WORK}/front-error.log warn;
worker_rlimit_nofile {h.nofile()};
events {{ worker_connections {h.nofile() // 2}; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path {h.WORK}/nginx-tmp;
  proxy_temp_path {h.WORK}/nginx-tmp;
  fastcgi_temp_path {h.WORK}/nginx-tmp;
  uwsgi_temp_path {h.WORK}/nginx-tmp;
  scgi_temp_path {h.WORK}/nginx-tmp;
  upstream app {{ server 127.0.0.1:{upstream}; keepalive 256; keepalive_requests 10000000; }}
  upstream tollgate {{ server 127.0.0.1:{decisions}; keepalive 256; keepalive_requests 10000000; }}
  server {{
    listen 127.0.0.1:{port} backlog=65535;
    location / {{
      auth_request /_tollgate;
      auth_request_set $auth_subject $upstream_http_x_auth_subject;
      auth_request_set $auth_client $upstream_http_x_auth_client_id;
      auth_request_set $auth_scope $upstream_http_x_auth_scope;
      auth_request_set $auth_method $upstream_http_x_auth_method;
      proxy_set_header X-Auth-Subject $auth_subject;
      proxy_set_header X-Auth-Client-Id $auth_client;
      proxy_set_header X-Auth-Scope $auth_scope;
      proxy_set_header X-Auth-Method $auth_method;
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
    location = /_tollgate {{
      internal;
      proxy_pass http://tollgate;
      proxy_http_version 1.1;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Connection "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-Host $host;
    }}
  }}
}}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--callgrind-requests", type=int, default=5000)
    ap.add_argument("--skip-callgrind", action="store_true")
    args = ap.parse_args()
    os.makedirs(os.path.join(h.WORK, "nginx-tmp"), exist_ok=True)
    procs = []
    try:
        run(args, procs)
    finally:
        for p in reversed(procs):
            p.stop()


def run(args, procs):
    ports = {k: h.free_port() for k in ("up", "tg", "tgm", "fa", "direct", "front")}
    up = ports["up"]
    h.write("upstream.conf", h.nginx_upstream_conf(up))
    h.start_nginx_upstream(procs)
    h.wait_http(up)
    h.es256_key()
    secret_hash = h.bench_secret_hash()
    upstreams_file = h.write("upstreams.yaml", upstreams(up, secret_hash))
    conf = h.write("tollgate.yaml", h.tollgate_conf("tollgate", ports["tg"], ports["tgm"],
                                                    upstreams_file)
                   + f"forward_auth: {{ listen: 127.0.0.1:{ports['fa']} }}\n")
    procs.append(h.Proc("tollgate", [h.TOLLGATE, "-c", conf], h.PROXY_CPU))
    h.write("direct.conf", h.nginx_proxy_conf(ports["direct"], up, "direct"))
    procs.append(h.Proc("direct", ["nginx", "-p", h.WORK, "-e", "stderr", "-c",
                                   os.path.join(h.WORK, "direct.conf")], h.PROXY_CPU))
    h.write("front.conf", nginx_forward_auth_conf(ports["front"], up, ports["fa"]))
    procs.append(h.Proc("front", ["nginx", "-p", h.WORK, "-e", "stderr", "-c",
                                  os.path.join(h.WORK, "front.conf")], h.PROXY_CPU))
    for port in (ports["tg"], ports["direct"]):
        h.wait_http(port)
    jwt = h.post_form(ports["tg"], "/credential/jwt", "grant_type=client_credentials",
                      f"bench:{h.SECRET}")["access_token"]
    bearer = f"Authorization: Bearer {jwt}"
    h.wait_http(ports["front"], "/ident/x", headers={"Authorization": f"Bearer {jwt}"})

    def at(port, path):
        return lambda d: h.wrk(f"http://127.0.0.1:{port}{path}", args.connections, d,
                               headers=[bearer])

    scenarios = [
        ("protected, no identity headers", at(ports["tg"], "/plain/x")),
        ("protected, 5 identity headers", at(ports["tg"], "/ident/x")),
        ("protected, 5 headers + phantom", at(ports["tg"], "/phantom/x")),
        ("nginx proxy_pass", at(ports["direct"], "/ident/x")),
        ("nginx + tollgate forward auth", at(ports["front"], "/ident/x")),
    ]
    for _, fn in scenarios:
        fn(1)
    rounds = {name: [] for name, _ in scenarios}
    for r in range(args.rounds):
        for name, fn in scenarios:
            res = fn(args.duration)
            rounds[name].append(res)
            print(f"round {r + 1} {name:34s} {res['rps']:>9.0f} req/s  p99 "
                  f"{res['p99_ms'] if res['p99_ms'] is not None else float('nan'):.2f} ms"
                  f"{'  non-2xx ' + str(res['non_2xx']) if res['non_2xx'] else ''}",
                  flush=True)

    if not args.rounds:
        scenarios = []

    def ratio(a, b):
        return statistics.median(x["rps"] / y["rps"] for x, y in zip(rounds[a], rounds[b])
                                 if y["rps"])

    if scenarios:
        report(scenarios, rounds, ratio)
    if args.skip_callgrind:
        return
    callgrind(procs, conf, ports, jwt, args)


def report(scenarios, rounds, ratio):
    print("\nmedian req/s:")
    for name, _ in scenarios:
        print(f"  {name:34s} {statistics.median(x['rps'] for x in rounds[name]):>9.0f}")
    print(f"  5 headers / none:           {ratio('protected, 5 identity headers', 'protected, no identity headers'):.3f}")
    print(f"  phantom / 5 headers:        {ratio('protected, 5 headers + phantom', 'protected, 5 identity headers'):.3f}")
    print(f"  forward auth / nginx alone: {ratio('nginx + tollgate forward auth', 'nginx proxy_pass'):.3f}")


def callgrind(procs, conf, ports, jwt, args):
    for p in procs[1:]:
        p.stop()
    del procs[1:]
    n_low, n_high = 500, 500 + args.callgrind_requests
    cg = {}
    for name, path in (("none", "/plain/x"), ("five", "/ident/x"), ("phantom", "/phantom/x")):
        cg[name] = h.instructions_per_request(f"identity-{name}", [h.TOLLGATE, "-c", conf],
                                              ports["tg"], path, jwt, "/plain/x", n_low, n_high)
        print(f"callgrind {name:8s} {cg[name]:>9,.0f} instructions/request", flush=True)
    print(f"5 headers add {cg['five'] - cg['none']:,.0f}; phantom adds "
          f"{cg['phantom'] - cg['five']:,.0f} on top of them")


if __name__ == "__main__":
    sys.exit(main())
