#!/usr/bin/env bash
# compile_time.sh — how long a translation unit that includes <duet/duet.hpp> takes to compile (g++,
# -std=c++20 -O0, the case a user waits for while editing), next to the floor: a translation unit that
# includes only the standard and libuv headers duet's public API is made of (strings, vectors, smart
# pointers, optional, variant, span, system_error, coroutines, stop tokens, chrono, <uv.h>).
#
#   bench/compile_time.sh [--runs N]
#
# Each is compiled N times (default 5); the median wall time of each is printed, then their ratio.
# Times are noisy on a shared machine: compare the two figures of one run, not runs of different days.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=5
case ${1:-} in
  --runs) runs=${2:?}; [[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "--runs takes a positive count" >&2; exit 2; } ;;
  "") ;;
  *) echo "usage: bench/compile_time.sh [--runs N]" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo '#include <duet/duet.hpp>' > "$work/duet.cpp"
for h in coroutine string vector memory optional variant span system_error stop_token chrono uv.h; do
  echo "#include <$h>"
done > "$work/floor.cpp"

median() {  # FILE: median wall seconds of $runs compilations
  local i
  for ((i = 0; i < runs; i++)); do
    /usr/bin/time -f "%e" g++ -std=c++20 -O0 -Iinclude -c "$1" -o "$work/out.o" 2>&1 >/dev/null | tail -1
  done | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

duet=$(median "$work/duet.cpp")
floor=$(median "$work/floor.cpp")
echo "== compile time, g++ $(g++ -dumpfullversion) -std=c++20 -O0, median of $runs"
echo "| translation unit | seconds |"
echo "| --- | --- |"
echo "| standard + libuv headers the API uses (floor) | $floor |"
echo "| <duet/duet.hpp> | $duet |"
awk -v d="$duet" -v f="$floor" 'BEGIN { printf "duet.hpp / floor = %.2f; the duet headers add %.2f s\n", d / f, d - f }'
