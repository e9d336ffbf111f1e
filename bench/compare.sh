#!/usr/bin/env bash
# compare.sh — duet against its floor and its peers, on two workloads, in one session; prints a table
# and renders a chart.
#
#   bench/compare.sh [--runs N] [--scale-runs N] [--out DIR] [--chart FILE]
#
# Starts nginx (one worker) on a loopback port of its own, serving the flag tree. Then, round after
# round, it runs each client once per workload,
# in an order rotated by one each round (so that no client always runs first or last on a machine
# whose speed drifts):
#
#   bare-c      bench/bare_client: libuv + llhttp by hand, no library (the floor)
#   callbacks   bench/http_load --face callbacks
#   coroutines  bench/http_load --face coroutines
#   node        bench/peers/node_load.js: Node.js http with a keep-alive agent
#   aiohttp     bench/peers/aiohttp_load.py: Python asyncio + aiohttp, the book's stack
#
# Workloads:
#   throughput  20,000 GETs of {cc}.gif, at most 100 in flight, against nginx          (--runs, 5)
#   scale       10,000 GETs all in flight at once, against flags_server DELAY at 1 s   (--scale-runs, 3)
#
# Each scale run gets a network namespace of its own (as root; `unshare --net`), with its own
# flags_server, a listen queue of 16,384 (net.core.somaxconn, set inside that namespace only) and no
# TIME_WAIT sockets left by the run before: otherwise 10,000 connects at once overflow the default
# queue of 4,096 and wait out SYN retries, and the ephemeral ports the previous runs left in
# TIME_WAIT make the kernel's port search slow. Without root the runs share this machine's network
# and the script says so.
#
# Each client prints one line (face=… seconds=… req_per_s=… peak_rss_mb=… cpu_us_per_req=…); the raw
# lines go to DIR/runs.txt (default build/release/bench/compare). The table gives each figure's median
# over the runs and its ratio to duet coroutines; it is printed and saved as DIR/table.md. The chart
# (gnuplot) goes to FILE (default docs/performance.png). A run with errors is reported and counts.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=5 scale_runs=3 out=build/release/bench/compare chart=docs/performance.png
usage() { echo "usage: bench/compare.sh [--runs N] [--scale-runs N] [--out DIR] [--chart FILE]" >&2; exit 2; }
while (($#)); do
  case $1 in
    --runs) runs=${2:?}; shift 2 ;;
    --scale-runs) scale_runs=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --chart) chart=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ && $scale_runs =~ ^[0-9]+$ ]] || usage

source scripts/deps.sh
duet_ensure_packages gnuplot-nox python3-aiohttp iproute2

build=build/release
cmake --preset release > /dev/null
cmake --build --preset release -j"$(nproc)" --target http_load bare_client flags_server > /dev/null
root=$(realpath "$build/flag_root")
mkdir -p "$out"
out=$(realpath "$out")
work=$(mktemp -d)
ulimit -n "$(ulimit -Hn)"  # 10,000 connections need 10,000 descriptors, in every client and server

source bench/lib.sh  # free_port, wait_listening, start_nginx, run_client, logged

# ---- the server ----------------------------------------------------------------------------------
start_nginx

# ---- the clients ---------------------------------------------------------------------------------
clients=(bare-c callbacks coroutines node aiohttp)
: > "$out/runs.txt"
round() {  # WORKLOAD ROUND: each client once, in an order rotated by ROUND
  local i n=${#clients[@]}
  for ((i = 0; i < n; ++i)); do
    local client=${clients[(i + $2) % n]}
    if [[ $1 == throughput ]]; then
      logged "$1" "$2" "$client" run_client "$client" "http://127.0.0.1:$nginx_port/flags" 20000 100
    else
      logged "$1" "$2" "$client" isolated "$client"
    fi
  done
}
echo "== throughput: 20,000 GETs, 100 in flight, nginx on :$nginx_port ($runs rounds)"
for r in $(seq "$runs"); do round throughput "$r"; done

isolated_setup  # bench/lib.sh: `isolated CLIENT`, in a network namespace of its own when root
echo "== scale: 10,000 GETs all in flight, flags_server DELAY (1 s), $isolation ($scale_runs rounds)"
for r in $(seq "$scale_runs"); do round scale "$r"; done

# ---- the table and the chart ------------------------------------------------------------------------
python3 bench/summarize.py "$out/runs.txt" --table "$out/table.md" --data "$out/chart.dat"
gnuplot -e "data='$out/chart.dat'; out='$chart'" bench/chart.gp
echo "chart: $chart"
