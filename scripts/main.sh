#!/usr/bin/env bash
# The main job: build (if needed), start flags_server, and run the flag programs side by side in
# each style (callbacks, coroutines, and threads: -m worker threads with a loop each) — `flags` against DELAY (all 676 codes AA..ZZ at once) and ERROR (-v: a line per code),
# `flags_names` against LOCAL, `flags_workers` (10 workers pulling codes from a queue, callbacks and
# coroutines) against LOCAL —
# printing each report under a heading that names the style; then
# `flags` over https, against a second flags_server with a certificate from a private CA made here
# (scripts/make_tls_certs.sh; the program trusts it through SSL_CERT_FILE). Then stop the servers. As in the book, each request times out after 3.1 s: DELAY and ERROR hold answers for
# 0.5 to 5 s, so a share of their codes end as `timed out` errors, counted in the report.
#
#   scripts/main.sh            (as root it installs the Debian packages it needs first)
#
# Flags are saved under downloaded/<style>/, downloaded/<style>-names/, downloaded/<style>-workers/
# and downloaded/https/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
duet_ensure_packages

build=build/release
if [[ ! -x $build/tools/flags_server || ! -x $build/examples/coroutines/flags ]]; then
  echo "== building (release preset)"
  cmake --preset release > /dev/null
fi
cmake --build --preset release -j"$(nproc)" > /dev/null  # quick when already built

servers=()
trap 'for s in "${servers[@]}"; do kill -INT $s 2> /dev/null; wait $s 2> /dev/null || true; done' EXIT
start_server() {  # start_server LOG ARGS...: flags_server in the background, until it listens (10 s at most)
  local log=$1
  shift
  "$build/tools/flags_server" "$@" > /dev/null 2> "$log" &
  servers+=($!)
  for _ in $(seq 100); do
    if grep -q "Ctrl-C stops" "$log" 2> /dev/null; then return; fi
    if ! kill -0 "${servers[-1]}" 2> /dev/null; then cat "$log" >&2; exit 1; fi
    sleep 0.1
  done
}
# The server on the book's ports: LOCAL 8000, DELAY 8001, ERROR 8002; its https twin on 8443-8445.
start_server flags_server.log
scripts/make_tls_certs.sh $build/tls
start_server flags_server_https.log --local-port 8443 --delay-port 8444 --error-port 8445 \
  --tls-cert $build/tls/server.pem --tls-key $build/tls/server.key

run() {  # run STYLE PROGRAM ARGS...
  local style=$1 program=$2
  shift 2
  echo
  echo "=== $style: $program $*"
  "$build/examples/$style/$program" "$@"
}
for style in callbacks coroutines threads; do run $style flags -s DELAY -e -m 1000 -o downloaded/$style; done
for style in callbacks coroutines threads; do run $style flags -s ERROR -v -m 20 -o downloaded/$style; done
for style in callbacks coroutines threads; do run $style flags_names -s LOCAL -a -o downloaded/$style-names; done
for style in callbacks coroutines; do run $style flags_workers -s LOCAL -a -m 10 -o downloaded/$style-workers; done
echo
echo "=== coroutines: flags -s https://127.0.0.1:8443/flags (trusting the private CA through SSL_CERT_FILE)"
SSL_CERT_FILE=$build/tls/ca.pem "$build/examples/coroutines/flags" -s https://127.0.0.1:8443/flags -a -o downloaded/https
