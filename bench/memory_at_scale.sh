#!/usr/bin/env bash
# bench/memory_at_scale.sh — peak memory with 10,000 requests in flight: the scale workload of
# bench/compare.sh (10,000 GETs all at once against flags_server's DELAY site, 1 s delay, in a
# network namespace of their own when root), for the bare client and duet's two faces only, which
# takes some 15 seconds a round instead of compare.sh's minutes. Prints each run's line and, per
# client, the median peak RSS over the rounds.
#
#   bench/memory_at_scale.sh [--runs N] [--clients "bare-c callbacks coroutines"]
#
# The targets (docs/performance.md): callbacks at most 24 MB, coroutines at most 30 MB.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=1 clients="bare-c callbacks coroutines"
usage() { echo "usage: bench/memory_at_scale.sh [--runs N] [--clients \"bare-c callbacks coroutines\"]" >&2; exit 2; }
while (($#)); do
  case $1 in
    --runs) runs=${2:?}; shift 2 ;;
    --clients) clients=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || usage
for c in $clients; do [[ $c =~ ^(bare-c|callbacks|coroutines)$ ]] || usage; done

source scripts/deps.sh
duet_ensure_packages iproute2

build=build/release
cmake --preset release > /dev/null
cmake --build --preset release -j"$(nproc)" --target http_load bare_client flags_server > /dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ulimit -n "$(ulimit -Hn)"  # 10,000 connections need 10,000 descriptors, in every client and server

source bench/lib.sh  # wait_listening, run_client, scale_once, isolated_setup
isolated_setup
echo "== 10,000 GETs all in flight, flags_server DELAY (1 s), $isolation ($runs rounds)"
declare -A rss
for r in $(seq "$runs"); do
  for c in $clients; do
    line=$(isolated "$c" 2> "$work/client.err" | tail -n 1) || true
    [[ $line == face=*' errors=0 '* ]] || { echo "$c failed: $line $(head -c 300 "$work/client.err")" >&2; exit 1; }
    echo "round=$r $line"
    rss[$c]+="$(sed -E 's/.*peak_rss_mb=([0-9.]+).*/\1/' <<< "$line") "
  done
done
echo
echo "| client | peak RSS MB (median of $runs) |"
echo "| --- | --- |"
for c in $clients; do
  echo "| $c | $(tr ' ' '\n' <<< "${rss[$c]}" | grep . | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }') |"
done
