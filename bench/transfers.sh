#!/usr/bin/env bash
# transfers.sh — a large download to disk from a loopback nginx, and a large upload from a file to a
# loopback Python http.server: duet's two faces against curl, with the peak resident set of each
# (bounded memory is the point: the body is never held whole).
#
#   bench/transfers.sh [--mb N] [--runs N] [--out DIR]
#
# Makes an N MiB file of random bytes (default 256). Then, round after round (default 3):
#   download  `curl -o` and bench/download --face callbacks / coroutines, from nginx into DIR (default
#             build/release/bench/transfers); each copy is checked against the original (cmp);
#   upload    `curl -T` (a POST, Content-Length, no Expect) and bench/upload --face callbacks /
#             coroutines, to tests/peers/python_server.py's /upload, which answers with the length and
#             SHA-256 of what it read; curl's answer is checked against the file's;
#   to duet   the same three uploads to bench/upload_sink, duet's server reading each body streamed
#             (ServerOptions::stream_body); curl's answer's length is checked, and the sink's own peak
#             RSS, after all the rounds, is printed at the end.
# One line per run (client, seconds, peak RSS; curl's from /usr/bin/time), then a table of medians with
# each face's throughput as a ratio of curl's. The raw lines go to DIR/runs.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mb=256 runs=3 out=build/release/bench/transfers
usage() { echo "usage: bench/transfers.sh [--mb N] [--runs N] [--out DIR]" >&2; exit 2; }
while (($#)); do
  case $1 in
    --mb) mb=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
build=build/release
for tool in download upload upload_sink; do
  [[ -x $build/bench/$tool ]] || { echo "build it first: cmake --build --preset release --target $tool" >&2; exit 1; }
done
command -v curl > /dev/null || { echo "curl is needed (apt-get install curl)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is needed (apt-get install time)" >&2; exit 1; }

mkdir -p "$out"
work=$(mktemp -d)
root=$work/root
mkdir -p "$root"
source bench/lib.sh
head -c $((mb << 20)) /dev/urandom > "$root/big.bin"
expected="$(stat -c %s "$root/big.bin") $(sha256sum "$root/big.bin" | cut -c1-64)"
start_nginx
python3 tests/peers/python_server.py "$root" > "$work/python.port" 2> "$work/python.log" &
python_pid=$!
trap 'kill $nginx_pid $python_pid 2> /dev/null; wait 2> /dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [[ -s $work/python.port ]] && break; sleep 0.1; done
python_port=$(head -n 1 "$work/python.port")
"$build/bench/upload_sink" > "$work/sink.port" 2> "$work/sink.log" &
sink_pid=$!
trap 'kill $nginx_pid $python_pid $sink_pid 2> /dev/null; wait 2> /dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [[ -s $work/sink.port ]] && break; sleep 0.1; done
sink_url="http://127.0.0.1:$(head -n 1 "$work/sink.port")/upload"
download_url="http://127.0.0.1:$nginx_port/big.bin"
upload_url="http://127.0.0.1:$python_port/upload"

timed_curl() {  # CURL-ARGS...: runs curl under /usr/bin/time; prints "seconds=S peak_rss_mb=M"
  /usr/bin/time -f '%e %M' -o "$work/time" curl -sS "$@"
  read -r seconds kb < "$work/time"
  echo "seconds=$seconds peak_rss_mb=$(awk -v k="$kb" 'BEGIN{printf "%.1f", k/1024}')"
}

: > "$out/runs.txt"
for round in $(seq "$runs"); do
  for client in curl callbacks coroutines; do
    rm -f "$out/big.bin"
    if [[ $client == curl ]]; then
      line="face=curl $(timed_curl -o "$out/big.bin" "$download_url")"
    else
      line=$("$build/bench/download" --url "$download_url" --out "$out/big.bin" --face "$client")
    fi
    cmp -s "$root/big.bin" "$out/big.bin" || { echo "round $round: $client's download differs" >&2; exit 1; }
    echo "transfer=download round=$round $line" | tee -a "$out/runs.txt"
  done
  for client in curl callbacks coroutines; do
    if [[ $client == curl ]]; then
      line="face=curl $(timed_curl -o "$work/answer" -X POST -H 'Expect:' -T "$root/big.bin" "$upload_url")"
      answer=$(cat "$work/answer")
    else
      line=$("$build/bench/upload" --url "$upload_url" --file "$root/big.bin" --face "$client")
      answer=$expected  # bench/upload checks the status; the server's answer is checked by the tests
    fi
    [[ $answer == "$expected" ]] || { echo "round $round: $client's upload arrived as '$answer'" >&2; exit 1; }
    echo "transfer=upload round=$round $line" | tee -a "$out/runs.txt"
  done
  for client in curl callbacks coroutines; do
    if [[ $client == curl ]]; then
      line="face=curl $(timed_curl -o "$work/answer" -X POST -H 'Expect:' -T "$root/big.bin" "$sink_url")"
      [[ $(cut -d' ' -f1 "$work/answer") == "${expected%% *}" ]] || { echo "round $round: curl's upload to duet arrived as '$(cat "$work/answer")'" >&2; exit 1; }
    else
      line=$("$build/bench/upload" --url "$sink_url" --file "$root/big.bin" --face "$client")
    fi
    echo "transfer=upload-to-duet round=$round $line" | tee -a "$out/runs.txt"
  done
done
kill -TERM $sink_pid 2> /dev/null && wait $sink_pid 2> /dev/null || true
sink_rss=$(grep -o 'peak_rss_mb=[0-9.]*' "$work/sink.log" || echo "peak_rss_mb=?")
rm -f "$out/big.bin"

python3 - "$out/runs.txt" "$mb" "$sink_rss" << 'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = dict(re.findall(r"(\w+)=(\S+)", line))
    runs.setdefault((f["transfer"], f["face"]), []).append((float(f["seconds"]), float(f["peak_rss_mb"])))
mb = int(sys.argv[2])
for transfer in ("download", "upload", "upload-to-duet"):
    curl = statistics.median(s for s, _ in runs[(transfer, "curl")])
    print(f"\n{transfer}: {mb} MiB, median of {len(runs[(transfer, 'curl')])} runs")
    print("| client | seconds | MB/s | peak RSS | throughput ÷ curl's |")
    print("|---|---|---|---|---|")
    for face in ("curl", "callbacks", "coroutines"):
        s = statistics.median(x for x, _ in runs[(transfer, face)])
        rss = max(r for _, r in runs[(transfer, face)])
        print(f"| {face} | {s:.3f} | {mb * 1.048576 / s:.0f} | {rss:.1f} MB | {curl / s:.2f} |")
print(f"\nduet's upload_sink, after all its uploads: {sys.argv[3]}")
PY
