#!/usr/bin/env python3
"""Protected-route throughput with an external issuer's token against tollgate's own, in
the same run, interleaved rounds (A B A B ...). Run through `scripts/bench.sh --issuers`.

An external issuer is a static JWKS served on loopback (its ES256 key made with openssl);
the token it signs is cached by tollgate after the first request exactly like its own, so
the ratio shows what the external path adds per request on a cache hit.

Layout (2 cores): tollgate on core 0; wrk, the upstream and the JWKS server on core 1.
"""

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

h.WORK = os.path.join(h.WORK, "issuers")
ISS = "https://idp.bench.test"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der_to_raw(der):
    """An ECDSA DER signature as the 64-byte r||s JWS uses."""
    assert der[0] == 0x30
    i = 2
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out += der[i + 2:i + 2 + n].lstrip(b"\0").rjust(32, b"\0")
        i += 2 + n
    return out


def es256_token(key_pem, kid, claims):
    header = b64(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    signing_input = f"{header}.{body}".encode()
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_pem], input=signing_input,
                         capture_output=True, check=True).stdout
    return f"{header}.{body}.{b64(der_to_raw(der))}"


def jwk(pub_pem, kid):
    """The public JWK of a P-256 key (the point from the DER SubjectPublicKeyInfo)."""
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", pub_pem, "-outform", "DER"],
                         capture_output=True, check=True).stdout
    point = der[-65:]
    return {"kty": "EC", "crv": "P-256", "x": b64(point[1:33]), "y": b64(point[33:]),
            "kid": kid, "alg": "ES256", "use": "sig"}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()
    subprocess.run(["rm", "-rf", h.WORK])
    os.makedirs(os.path.join(h.WORK, "nginx-tmp"))
    procs = []
    try:
        run(args, procs)
    finally:
        for p in reversed(procs):
            p.stop()


def run(args, procs):
    ports = {k: h.free_port() for k in ("up", "jwks", "tg", "tgm")}
    h.write("upstream.conf", h.nginx_upstream_conf(ports["up"]))
    h.start_nginx_upstream(procs)
    h.wait_http(ports["up"])
    # The external issuer: its key, its JWKS on loopback.
    idp_key = os.path.join(h.WORK, "idp-key.pem")
    idp_pub = os.path.join(h.WORK, "idp-pub.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", idp_key], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", idp_key, "-pubout", "-out", idp_pub],
                   check=True, capture_output=True)
    jwks_dir = os.path.join(h.WORK, "jwks")
    os.makedirs(jwks_dir)
    with open(os.path.join(jwks_dir, "jwks.json"), "w") as f:
        json.dump({"keys": [jwk(idp_pub, "idp-1")]}, f)
    procs.append(h.Proc("jwks", ["python3", "-m", "http.server", str(ports["jwks"]), "--bind",
                                 "127.0.0.1", "--directory", jwks_dir], h.LOAD_CPU))
    h.wait_http(ports["jwks"], "/jwks.json")

    h.es256_key()
    secret_hash = h.bench_secret_hash()
    upstreams = h.tollgate_upstreams(ports["up"], secret_hash)
    upstreams = upstreams.replace(
        "auth: jwt, rules:", "auth: jwt, issuers: [tollgate, idp], rules:")
    upstreams += (f"issuers:\n  - {{ name: idp, issuer: \"{ISS}\", "
                  f"jwks_uri: \"http://127.0.0.1:{ports['jwks']}/jwks.json\", "
                  f"audiences: [api], algorithms: [ES256] }}\n")
    upstreams_file = h.write("upstreams.yaml", upstreams)
    conf = h.write("tollgate.yaml", h.tollgate_conf("tollgate", ports["tg"], ports["tgm"],
                                                    upstreams_file))
    procs.append(h.Proc("tollgate", [h.TOLLGATE, "-c", conf], h.PROXY_CPU))
    h.wait_http(ports["tg"])

    own = h.post_form(ports["tg"], "/credential/jwt", "grant_type=client_credentials",
                      f"bench:{h.SECRET}")["access_token"]
    now = int(time.time())
    external = es256_token(idp_key, "idp-1", {
        "iss": ISS, "sub": "user-1", "aud": "api", "exp": now + 3600, "iat": now,
        "client_id": "bench-app", "scope": "bench:read"})
    url = f"http://127.0.0.1:{ports['tg']}/api/x"
    # The issuer's keys arrive in the background: wait until its token passes.
    deadline = time.monotonic() + 30
    while h.wrk(url, 1, 1, headers=[f"Authorization: Bearer {external}"])["non_2xx"]:
        if time.monotonic() > deadline:
            raise SystemExit("the external token never passed")
    scenarios = [("own JWT", own), ("external issuer JWT", external)]
    rounds = {name: [] for name, _ in scenarios}
    for r in range(args.rounds):
        for name, token in scenarios:
            res = h.wrk(url, args.connections, args.duration,
                        headers=[f"Authorization: Bearer {token}"])
            res.pop("raw", None)
            rounds[name].append(res)
            print(f"round {r + 1} {name:22s} {res['rps']:>9.0f} req/s  p99 "
                  f"{res['p99_ms'] or float('nan'):.2f} ms"
                  f"{'  non-2xx ' + str(res['non_2xx']) if res['non_2xx'] else ''}", flush=True)
    ratio = statistics.median(e["rps"] / o["rps"] for o, e in
                              zip(rounds["own JWT"], rounds["external issuer JWT"]))
    print()
    for name, rs in rounds.items():
        print(f"{name:22s} median {statistics.median(x['rps'] for x in rs):>9.0f} req/s   "
              + " / ".join(f"{x['rps']:.0f}" for x in rs))
    print(f"external / own (median of per-round ratios): {ratio:.3f}")
    with open(os.path.join(h.WORK, "latest.json"), "w") as f:
        json.dump({"rounds": rounds, "external_over_own": ratio}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
