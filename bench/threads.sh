#!/usr/bin/env bash
# bench/threads.sh — what loops on many threads buy, in two runs of figures (one run each; the
# machines are shared and noisy, so read the ratios):
#
#  1. the server: wrk against flags_server's LOCAL site served from 1 loop, then from 2 loops
#     (--threads 1 and --threads 2), each on a thread of its own: requests per second, and the ratio;
#  2. the three styles of the flag program: `flags -s DELAY -e -m 1000` (676 codes, each answer held
#     1 s) in the callbacks, coroutines and threads styles: wall time, peak RSS, and the most threads
#     the process had at once (sampled from /proc every 10 ms).
#
#   bench/threads.sh [--seconds S]     (wrk's duration per run; 10 by default)
#
# Needs the release build (cmake --preset release && cmake --build --preset release) and wrk (installed
# here through the project's package list when run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
duet_ensure_packages wrk time

seconds=10
[[ ${1:-} == --seconds ]] && seconds=$2
build=build/release
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -INT $p 2> /dev/null; wait $p 2> /dev/null || true; done; rm -rf "$work"' EXIT

start_server() {  # start_server NAME ARGS...: flags_server on free ports; its LOCAL and DELAY URLs in $local, $delay
  local name=$1
  shift
  "$build/tools/flags_server" --local-port 0 --delay-port 0 --error-port 0 "$@" > "$work/$name.out" 2> "$work/$name.log" &
  pids+=($!)
  for _ in $(seq 100); do
    if grep -q "Ctrl-C stops" "$work/$name.log" 2> /dev/null; then break; fi
    sleep 0.1
  done
  local=$(awk '/^LOCAL/ {print $2}' "$work/$name.out")
  delay=$(awk '/^DELAY/ {print $2}' "$work/$name.out")
}
stop_server() { kill -INT "${pids[-1]}"; wait "${pids[-1]}" || true; unset 'pids[-1]'; }

echo "== flags_server LOCAL under wrk (2 threads, 100 connections, ${seconds} s, /flags/br/br.gif)"
declare -A rate
for n in 1 2; do
  start_server "server$n" --threads "$n"
  rate[$n]=$(wrk -t2 -c100 -d"${seconds}s" "$local/br/br.gif" | awk '/^Requests\/sec/ {print $2}')
  stop_server
  echo "--threads $n: ${rate[$n]} requests/s"
done
python3 -c "print(f'--threads 2 / --threads 1: {${rate[2]} / ${rate[1]}:.2f}')"

echo
echo "== flags -s DELAY -e -m 1000 (flags_server --delay 1): wall time, peak RSS, most threads at once"
start_server styles --delay 1
for style in callbacks coroutines threads; do
  out=$work/$style
  /usr/bin/time -f "%e %M" -o "$work/time" "$build/examples/$style/flags" -s "$delay" -e -m 1000 -o "$out" \
    > "$work/report" &
  pid=$!
  most=0
  while kill -0 $pid 2> /dev/null; do
    for child in $(pgrep -P $pid); do
      n=$(awk '/^Threads:/ {print $2}' /proc/$child/status 2> /dev/null || echo 0)
      ((n > most)) && most=$n
    done
    sleep 0.01
  done
  wait $pid
  read -r wall rss_kb < "$work/time"
  found=$(grep -c . < <(ls "$out"))
  awk -v s="$style" -v w="$wall" -v r="$rss_kb" -v t="$most" -v f="$found" \
    'BEGIN { printf "%-10s wall %5.2f s   peak RSS %6.1f MB   threads %4d   (%d flags saved)\n", s, w, r / 1024, t, f }'
done
stop_server
