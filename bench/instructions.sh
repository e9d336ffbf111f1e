#!/usr/bin/env bash
# instructions.sh — user-space instructions per request (valgrind's callgrind) for the bare C client,
# duet's callback face and its coroutine face, on the throughput workload: GETs of the flag tree from
# a loopback nginx (one worker, keep-alive), 100 in flight, every request started up front and gated
# by a semaphore (http_load's shape, the flag programs' shape).
#
#   bench/instructions.sh [--short N] [--long N] [--concurrency C]
#
# Each client runs twice under callgrind, N₁ and N₂ requests (defaults 2,000 and 12,000); start-up
# and shut-down cost the same in both, so (I₂ − I₁) / (N₂ − N₁) is the cost of one request in the
# steady state. Callgrind counts instructions exactly, whatever else the machine is doing: unlike
# times, these figures repeat from run to run and can be compared across machines with the same
# compiler and libraries. Prints one table (markdown) with the ratios the performance targets use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

short=2000 long=12000 concurrency=100
usage() { echo "usage: bench/instructions.sh [--short N] [--long N] [--concurrency C]" >&2; exit 2; }
while (($#)); do
  case $1 in
    --short) short=${2:?}; shift 2 ;;
    --long) long=${2:?}; shift 2 ;;
    --concurrency) concurrency=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
[[ $short =~ ^[1-9][0-9]*$ && $long =~ ^[1-9][0-9]*$ && $concurrency =~ ^[1-9][0-9]*$ ]] || usage
((long > short)) || { echo "--long must be more than --short" >&2; exit 2; }

source scripts/deps.sh
duet_ensure_packages valgrind

build=build/release
cmake --preset release > /dev/null
cmake --build --preset release -j"$(nproc)" --target http_load bare_client flags_server > /dev/null
root=$(realpath "$build/flag_root")
work=$(mktemp -d)
source bench/lib.sh  # free_port, wait_listening, start_nginx, run_client
start_nginx

client_command() {  # CLIENT: the command that runs it
  case $1 in
    bare-c) echo "$build/bench/bare_client" ;;
    callbacks | coroutines) echo "$build/bench/http_load --face $1" ;;
  esac
}

instructions() {  # CLIENT REQUESTS: total user-space instructions of one run under callgrind
  local file=$work/callgrind.out
  # shellcheck disable=SC2046  # the command's words are meant to split
  valgrind --tool=callgrind --callgrind-out-file="$file" $(client_command "$1") \
    --url "http://127.0.0.1:$nginx_port/flags" --requests "$2" --concurrency "$concurrency" \
    > "$work/client.out" 2> "$work/valgrind.err" ||
    { echo "$1 failed under callgrind:" >&2; cat "$work/valgrind.err" "$work/client.out" >&2; exit 1; }
  grep -q ' errors=0 ' "$work/client.out" ||
    { echo "$1 had errors: $(cat "$work/client.out")" >&2; exit 1; }
  awk '/^totals:/ { print $2 }' "$file"
}

echo "== instructions per request: ($short and $long GETs, $concurrency in flight, nginx on :$nginx_port)"
declare -A per
for client in bare-c callbacks coroutines; do
  i1=$(instructions "$client" "$short")
  i2=$(instructions "$client" "$long")
  per[$client]=$(( (i2 - i1) / (long - short) ))
  echo "$client: $i1 instructions for $short requests, $i2 for $long: ${per[$client]} per request"
done

ratio() { python3 -c "print(f'{$1 / $2:.3f}')"; }
echo
echo "| client | instructions per request | ÷ bare C | ÷ callbacks |"
echo "| --- | --- | --- | --- |"
for client in bare-c callbacks coroutines; do
  echo "| $client | ${per[$client]} | $(ratio "${per[$client]}" "${per[bare-c]}") | $(ratio "${per[$client]}" "${per[callbacks]}") |"
done
