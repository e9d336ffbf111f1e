#!/usr/bin/env bash
# The main job: build (if needed), start flags_server, and run both styles of the flag programs side
# by side — `flags` against DELAY (all 676 codes AA..ZZ at once) and ERROR (-v: a line per code),
# `flags_names` against LOCAL — printing each report under a heading that names the style. Then stop
# the server. As in the book, each request times out after 3.1 s: DELAY and ERROR hold answers for
# 0.5 to 5 s, so a share of their codes end as `timed out` errors, counted in the report.
#
#   scripts/main.sh            (as root it installs the Debian packages it needs first)
#
# Flags are saved under downloaded/<style>/ and downloaded/<style>-names/.
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

# The server on the book's ports: LOCAL 8000, DELAY 8001, ERROR 8002.
"$build/tools/flags_server" > /dev/null 2> flags_server.log &
server=$!
trap 'kill -INT $server 2> /dev/null; wait $server 2> /dev/null || true' EXIT
for _ in $(seq 100); do  # until it listens (or give up after 10 s)
  if grep -q "Ctrl-C stops" flags_server.log 2> /dev/null; then break; fi
  if ! kill -0 $server 2> /dev/null; then cat flags_server.log >&2; exit 1; fi
  sleep 0.1
done

run() {  # run STYLE PROGRAM ARGS...
  local style=$1 program=$2
  shift 2
  echo
  echo "=== $style: $program $*"
  "$build/examples/$style/$program" "$@"
}
for style in callbacks coroutines; do run $style flags -s DELAY -e -m 1000 -o downloaded/$style; done
for style in callbacks coroutines; do run $style flags -s ERROR -v -m 20 -o downloaded/$style; done
for style in callbacks coroutines; do run $style flags_names -s LOCAL -a -o downloaded/$style-names; done
