#!/usr/bin/env bash
# Install what a fresh Debian machine lacks to build and test tollgate. Pingora builds
# zlib-ng with cmake; the vendored OpenSSL needs perl and make; the interop tests run
# openid-client on Node.js, the cluster tests a redis-server, the browser tests Debian's
# chromium and chromedriver, the forward-auth tests Debian's nginx, the monitoring tests promtool (--test); the load
# harness compares with nginx and HAProxy (--bench). Safe to run again: it installs only
# what is missing.
set -euo pipefail

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v make >/dev/null 2>&1 || need+=(make)
command -v perl >/dev/null 2>&1 || need+=(perl)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ "${1:-}" = "--test" ]; then
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  command -v c++ >/dev/null 2>&1 || need+=(g++)   # libFuzzer, for the fuzz-target build check
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)   # cluster-store tests (redis-cli comes with it)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)           # browser tests, driven through
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver) # chromedriver (never a downloaded browser)
  [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need+=(nginx)  # a front proxy (forward auth)
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)        # promtool: the shipped alert rules
  command -v python3 >/dev/null 2>&1 || need+=(python3)          # the docs tests: the quick start's demo upstream
fi

if [ "${1:-}" = "--bench" ]; then
  # The load harness: the proxies it compares with, the load generator, callgrind, and
  # openssl for the shared ES256 key.
  command -v nginx >/dev/null 2>&1 || need+=(nginx)
  command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
  command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  command -v taskset >/dev/null 2>&1 || need+=(util-linux)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)   # the cluster harness
  command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)       # the gRPC harness
  [ -e /usr/lib/nginx/modules/ngx_http_js_module.so ] || need+=(libnginx-mod-http-js)  # njs peer
  command -v node >/dev/null 2>&1 || need+=(nodejs)                 # its gRPC server
  command -v npm >/dev/null 2>&1 || need+=(npm)
fi

if ((${#need[@]})); then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "installing: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
