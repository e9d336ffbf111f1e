#!/usr/bin/env bash
# download.sh — a large download to disk from a loopback nginx: duet's two faces against curl, with
# the peak resident set of each (bounded memory is the point: the body is never held whole).
#
#   bench/download.sh [--mb N] [--runs N] [--out DIR]
#
# Makes an N MiB file of random bytes (default 256) for nginx to serve, then, round after round (default
# 3), downloads it with `curl -o` and with bench/download --face callbacks and --face coroutines, each
# into DIR (default build/release/bench/download), checks each copy against the original (cmp), and
# prints one line per run: client, seconds, MB/s, peak RSS (curl's from /usr/bin/time). The last lines
# are the medians and each face's throughput as a ratio of curl's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mb=256 runs=3 out=build/release/bench/download
usage() { echo "usage: bench/download.sh [--mb N] [--runs N] [--out DIR]" >&2; exit 2; }
while (($#)); do
  case $1 in
    --mb) mb=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
build=build/release
[[ -x $build/bench/download ]] || { echo "build it first: cmake --build --preset release --target download" >&2; exit 1; }
command -v curl > /dev/null || { echo "curl is needed (apt-get install curl)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is needed (apt-get install time)" >&2; exit 1; }

mkdir -p "$out"
work=$(mktemp -d)
root=$work/root
mkdir -p "$root"
source bench/lib.sh
head -c $((mb << 20)) /dev/urandom > "$root/big.bin"
start_nginx
url="http://127.0.0.1:$nginx_port/big.bin"

: > "$out/runs.txt"
for round in $(seq "$runs"); do
  for client in curl callbacks coroutines; do
    rm -f "$out/big.bin"
    if [[ $client == curl ]]; then
      /usr/bin/time -f '%e %M' -o "$work/time" curl -s -o "$out/big.bin" "$url"
      read -r seconds kb < "$work/time"
      line="face=curl bytes=$(stat -c %s "$out/big.bin") seconds=$seconds peak_rss_mb=$(awk -v k="$kb" 'BEGIN{printf "%.1f", k/1024}')"
    else
      line=$("$build/bench/download" --url "$url" --out "$out/big.bin" --face "$client")
    fi
    cmp -s "$root/big.bin" "$out/big.bin" || { echo "round $round: $client's copy differs from the original" >&2; exit 1; }
    echo "round=$round $line" | tee -a "$out/runs.txt"
  done
done
rm -f "$out/big.bin"

python3 - "$out/runs.txt" "$mb" << 'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = dict(re.findall(r"(\w+)=(\S+)", line))
    runs.setdefault(f["face"], []).append((float(f["seconds"]), float(f["peak_rss_mb"])))
mb = int(sys.argv[2])
curl = statistics.median(s for s, _ in runs["curl"])
print(f"\n{mb} MiB from nginx to disk, median of {len(runs['curl'])} runs")
print("| client | seconds | MB/s | peak RSS | throughput ÷ curl's |")
print("|---|---|---|---|---|")
for face in ("curl", "callbacks", "coroutines"):
    s = statistics.median(x for x, _ in runs[face])
    rss = max(r for _, r in runs[face])
    print(f"| {face} | {s:.3f} | {mb * 1.048576 / s:.0f} | {rss:.1f} MB | {curl / s:.2f} |")
PY
