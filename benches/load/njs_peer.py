#!/usr/bin/env python3
"""nginx + njs as a further peer: harness.nginx_proxy_conf (same settings) with, in front of
the proxy_pass, the checks harness.haproxy_conf makes, in njs with WebCrypto: `alg` ES256,
the ES256 signature (raw r||s) verifies, `exp` not past, scope bench:read present (401 for
a bad token, 403 for a missing scope, as HAProxy answers).

njs 0.7.9 (Debian's libnginx-mod-http-js) runs every request in a fresh clone of the VM,
module top level included, so nothing cached at module level outlives the request: the key
is imported (SPKI DER; ECDSA "jwk" and "raw" import are not in 0.7.9) on every request.
mode "redirect": js_content verifies, then r.internalRedirect()s to a named location with
the proxy_pass; mode "auth_request": a subrequest to a js_content location (204/401/403).

`python3 benches/load/njs_peer.py`: self-test, then req/s against the plain nginx.
"""

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

NJS_PACKAGE = "libnginx-mod-http-js"
NJS_MODULE = "/usr/lib/nginx/modules/ngx_http_js_module.so"
SCOPE = "bench:read"  # what haproxy_conf requires
SCOPE_STATUS = 403  # haproxy_conf: deny_status 403 when the scope is missing

JS = r"""// Written by benches/load/njs_peer.py.
const SPKI = Buffer.from("%SPKI%", "base64");
const SCOPE = "%SCOPE%";
const EC = {name: "ECDSA", namedCurve: "P-256"};
const ES256 = {name: "ECDSA", hash: "SHA-256"};

// 0 when the request may pass, else the status to answer.
async function status(r) {
    const a = r.headersIn.Authorization;
    if (!a || a.length < 8 || a.slice(0, 7).toLowerCase() !== "bearer ") return 401;
    const t = a.slice(7).trim();
    const d1 = t.indexOf("."), d2 = t.indexOf(".", d1 + 1);
    if (d1 < 1 || d2 < 0 || t.indexOf(".", d2 + 1) >= 0) return 401;
    // A bad JSON or base64url throws: verdict() answers 401.
    const h = JSON.parse(Buffer.from(t.slice(0, d1), "base64url").toString());
    const p = JSON.parse(Buffer.from(t.slice(d1 + 1, d2), "base64url").toString());
    if (!h || h.alg !== "ES256" || !p) return 401;
    const sig = Buffer.from(t.slice(d2 + 1), "base64url");
    if (sig.length !== 64) return 401;
    // Per request: a module-level cache does not outlive the request in njs 0.7.9.
    const key = await crypto.subtle.importKey("spki", SPKI, EC, false, ["verify"]);
    if (!(await crypto.subtle.verify(ES256, key, sig, Buffer.from(t.slice(0, d2))))) return 401;
    if (typeof p.exp !== "number" || p.exp < Math.floor(Date.now() / 1000)) return 401;
    const s = p.scope;
    const scopes = typeof s === "string" ? s.split(" ") : (Array.isArray(s) ? s : []);
    return scopes.indexOf(SCOPE) >= 0 ? 0 : %SCOPE_STATUS%;
}

async function verdict(r) {
    try { return await status(r); } catch (e) { return 401; }
}

async function guarded(r) {  // mode "redirect"
    const st = await verdict(r);
    if (st) r.return(st); else r.internalRedirect("@app");
}

async function auth(r) {  // mode "auth_request"
    const st = await verdict(r);
    r.return(st || 204);
}

export default {guarded, auth};
"""

LOCATION = re.compile(r"^    location / \{\n(.*?)\n    \}\n", re.M | re.S)


def spki_der_b64(pubkey_pem_path_or_text):
    """The base64 DER body of a SubjectPublicKeyInfo PEM (a path, or the PEM text)."""
    pem = pubkey_pem_path_or_text
    if "-----BEGIN" not in pem:
        with open(pem) as f:
            pem = f.read()
    m = re.search(r"-----BEGIN PUBLIC KEY-----(.*?)-----END PUBLIC KEY-----", pem, re.S)
    if not m:
        raise SystemExit("njs_peer: need a PEM 'PUBLIC KEY' (SubjectPublicKeyInfo)")
    return "".join(m.group(1).split())


def njs_conf(port, upstream, name, pubkey_pem_path_or_text, work_dir, master=True,
             mode="redirect"):
    """harness.nginx_proxy_conf with its files under `work_dir` and the JWT check in front
    of the proxy_pass; writes `work_dir`/`name`.js."""
    work_dir = os.path.abspath(work_dir)
    os.makedirs(os.path.join(work_dir, "nginx-tmp"), exist_ok=True)
    js_path = os.path.join(work_dir, f"{name}.js")
    with open(js_path, "w") as f:
        f.write(JS.replace("%SPKI%", spki_der_b64(pubkey_pem_path_or_text))
                .replace("%SCOPE%", SCOPE).replace("%SCOPE_STATUS%", str(SCOPE_STATUS)))
    conf = harness.nginx_proxy_conf(port, upstream, name, master)
    conf = conf.replace(harness.WORK.rstrip("/") + "/", work_dir + "/")
    m = LOCATION.search(conf)
    if not m or "proxy_pass http://app;" not in m.group(1) or "\nhttp {\n" not in conf:
        raise SystemExit("njs_peer: harness.nginx_proxy_conf changed shape; update njs_conf")
    proxy = m.group(1)  # the proxy_pass lines, as the plain nginx has them
    if mode == "redirect":
        loc = (f"    location / {{ js_content jwt.guarded; }}\n"
               f"    location @app {{\n{proxy}\n    }}\n")
    elif mode == "auth_request":
        loc = (f"    location / {{\n      auth_request /_jwt;\n{proxy}\n    }}\n"
               "    location = /_jwt { internal; js_content jwt.auth; }\n")
    else:
        raise ValueError(f"mode: redirect or auth_request, not {mode!r}")
    conf = conf[:m.start()] + loc + conf[m.end():]
    conf = conf.replace("\nhttp {\n", f"\nhttp {{\n  js_import jwt from {js_path};\n", 1)
    return f"load_module {NJS_MODULE};\n" + conf


_b64u = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()  # noqa: E731
_unb64u = lambda text: base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))  # noqa: E731


def mint(key_pem_path, claims, header=None):
    """An ES256 JWT over `claims`, signed with the PKCS#8 PEM key at `key_pem_path`."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    with open(key_pem_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    header = header or {"alg": "ES256", "typ": "JWT", "kid": "bench"}
    signing_input = ".".join(_b64u(json.dumps(o, separators=(",", ":")).encode())
                             for o in (header, claims))
    r, s = utils.decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + _b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def check(port, token, key_pem_path=None, path="/api/x"):
    """Self-test of the peer on 127.0.0.1:`port`: {case: (status, expected)}, SystemExit on
    a mismatch. With the signing key: also re-signed, expired, scope-less, alg-swapped."""
    def status(tok):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", path, headers={"Authorization": f"Bearer {tok}"} if tok else {})
        with c.getresponse() as r:
            r.read()
        c.close()
        return r.status

    head, body, sig = token.split(".")
    i = len(sig) // 2  # a middle character: all six of its bits are signature bits
    tampered = f"{head}.{body}.{sig[:i]}{'B' if sig[i] == 'A' else 'A'}{sig[i + 1:]}"
    cases = [("valid", token, 200), ("tampered signature", tampered, 401),
             ("no token", None, 401), ("not a JWT", "abc", 401)]
    if key_pem_path:
        header, claims = json.loads(_unb64u(head)), json.loads(_unb64u(body))
        sign = lambda c, h=header: mint(key_pem_path, c, h)  # noqa: E731
        cases += [
            ("re-signed valid", sign(claims), 200),
            ("expired", sign({**claims, "exp": int(time.time()) - 60}), 401),
            ("no exp", sign({k: v for k, v in claims.items() if k != "exp"}), 401),
            ("scope missing", sign({**claims, "scope": "other bench:readx"}), SCOPE_STATUS),
            ("alg ES384 in header", sign(claims, {**header, "alg": "ES384"}), 401),
        ]
    results = {name: (status(tok), want) for name, tok, want in cases}
    bad = {k: v for k, v in results.items() if v[0] != v[1]}
    if bad:
        raise SystemExit(f"njs peer self-test failed: {bad}")
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--modes", default="redirect", help="redirect,auth_request")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    harness.raise_nofile()
    work = harness.WORK = tempfile.mkdtemp(prefix="njs-peer-")
    os.makedirs(os.path.join(work, "nginx-tmp"))
    modes = args.modes.split(",")
    up, tg, tg_m = (harness.free_port() for _ in range(3))
    procs = []
    try:
        harness.write("upstream.conf", harness.nginx_upstream_conf(up))
        harness.start_nginx_upstream(procs)
        harness.wait_http(up)
        key, pub = harness.es256_key()
        if os.path.exists(harness.TOLLGATE):  # a token the way harness.run() gets it
            upstreams = harness.write("upstreams.yaml", harness.tollgate_upstreams(
                up, harness.bench_secret_hash()))
            conf = harness.write("tollgate.yaml", harness.tollgate_conf(
                "tollgate", tg, tg_m, upstreams))
            procs.append(harness.Proc("tollgate", [harness.TOLLGATE, "-c", conf],
                                      harness.PROXY_CPU))
            harness.wait_http(tg)
            jwt = harness.post_form(tg, "/credential/jwt", "grant_type=client_credentials",
                                    f"bench:{harness.SECRET}")["access_token"]
            procs.pop().stop()
            print(f"token from {harness.TOLLGATE}")
        else:
            now = int(time.time())
            jwt = mint(key, {"iss": harness.ISSUER, "sub": "bench", "aud": "api", "exp": now + 900,
                             "iat": now, "nbf": now, "jti": "njs-peer", "client_id": "bench",
                             "scope": SCOPE})
            print("token self-signed (no gateway binary)")
        print("claims:", _unb64u(jwt.split(".")[1]).decode())
        ports = {name: harness.free_port() for name in ["nginx", *modes]}
        confs = {"nginx": harness.nginx_proxy_conf(ports["nginx"], up, "nginx")}
        confs.update({m: njs_conf(ports[m], up, f"njs-{m}", pub, work, mode=m) for m in modes})
        for name, text in confs.items():
            procs.append(harness.Proc(f"server-{name}", ["nginx", "-p", work, "-e", "stderr", "-c",
                                      harness.write(f"{name}.conf", text)], harness.PROXY_CPU))
        for port in ports.values():
            harness.wait_http(port)
        for mode in modes:
            for case, (got, exp) in check(ports[mode], jwt, key).items():
                print(f"check njs {mode:12s} {case:22s} {got} (want {exp})")
        bearer = f"Authorization: Bearer {jwt}"
        scenarios = [("nginx proxy_pass", ports["nginx"])] + [(f"njs {m}", ports[m]) for m in modes]
        for _, port in scenarios:
            harness.wrk(f"http://127.0.0.1:{port}/api/x", args.connections, 1, headers=[bearer])
        for r in range(args.rounds):
            for name, port in scenarios:
                res = harness.wrk(f"http://127.0.0.1:{port}/api/x", args.connections,
                                  args.duration, headers=[bearer])
                print(f"round {r + 1} {name:24s} {res['rps']:>10.0f} req/s  p99 "
                      f"{res['p99_ms'] or float('nan'):.2f} ms  non-2xx {res['non_2xx']}  "
                      f"socket errors {res['socket_errors']}", flush=True)
    finally:
        for p in reversed(procs):
            p.stop()
        if args.keep:
            print(f"work directory: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
