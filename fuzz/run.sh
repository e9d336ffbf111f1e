#!/usr/bin/env bash
# Runs duet's fuzzers for longer than CI does (CI tries a few thousand inputs each): every fuzzer, or
# those named, for SECONDS each (default 600), as many at once as there are cores. Builds the `fuzz`
# preset first (clang-14 with libFuzzer, ASan and UBSan; installs them if missing, as root).
#
# New inputs that reach new code collect in build/fuzz/fuzz/work/NAME, on top of the seeds in
# fuzz/corpus/NAME; a crash, leak, timeout or failed check stops that fuzzer, saves the input in
# build/fuzz/fuzz/crashes/NAME and makes this script exit 1. Replay one with
#     build/fuzz/fuzz/fuzz_NAME build/fuzz/fuzz/crashes/NAME/crash-...
# and, once fixed, copy it into fuzz/corpus/NAME so that every CI run replays it.
#
# Usage: fuzz/run.sh [SECONDS] [NAME ...]   (names: http_response http_request http_request_writer url tls_client flags_args)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/deps.sh
duet_ensure_packages clang-14 libclang-rt-14-dev

seconds=${1:-600}
(($# > 0)) && shift
names=("$@")
((${#names[@]})) || names=(http_response http_request http_request_writer url tls_client flags_args)

cmake --preset fuzz > /dev/null
cmake --build --preset fuzz -j "$(nproc)"

out=build/fuzz/fuzz
run_one() {
  local name=$1 log=$out/$1.log
  mkdir -p "$out/work/$name" "$out/crashes/$name"
  local status=0
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$out/fuzz_$name" -max_total_time="$seconds" -max_len=4096 -timeout=20 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$out/crashes/$name/" \
    "$out/work/$name" "fuzz/corpus/$name" > "$log" 2>&1 || status=$?
  local runs rate rss
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
  if ((status == 0)); then
    echo "fuzz_$name: ${runs:-?} inputs in ${seconds} s (${rate:-?}/s), peak RSS ${rss:-?} MB, no crash or leak"
  else
    echo "fuzz_$name: FAILED (exit $status) after ${runs:-?} inputs; see $log and $out/crashes/$name"
  fi
  return "$status"
}

echo "== fuzzing ${names[*]} for ${seconds} s each, $(nproc) at a time"
failed=0
running=0
for name in "${names[@]}"; do
  if ((running >= $(nproc))); then
    wait -n || failed=1
    running=$((running - 1))
  fi
  run_one "$name" &
  running=$((running + 1))
done
while ((running > 0)); do
  wait -n || failed=1
  running=$((running - 1))
done
exit "$failed"
