#!/usr/bin/env bash
# compile_time.sh — how long a translation unit that includes <duet/duet.hpp> takes to compile (g++,
# -std=c++20 -O0, the case a user waits for while editing), next to the floor: a translation unit that
# includes only the standard and libuv headers duet's public API is made of (strings, vectors, smart
# pointers, optional, variant, span, system_error, coroutines, stop tokens, chrono's durations and
# clocks (duet/detail/chrono.hpp, which picks them out of the standard library), <uv.h>).
#
#   bench/compile_time.sh [--runs N] [--instructions]
#
# Each is compiled N times (default 5), the two taking turns (in alternating order) so that both see
# the same machine; the median wall time of each is printed, then their ratio. Times are noisy on a
# shared machine: compare the two figures of one run, not runs of different days. `--instructions`
# also counts the instructions the compiler proper (cc1plus) runs for each, under valgrind: slower,
# but the same figure on every run, for telling apart changes too small for the wall clock.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=5
instructions=0
while (($#)); do
  case $1 in
    --runs)
      runs=${2:-}
      [[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "--runs takes a positive count" >&2; exit 2; }
      shift 2 ;;
    --instructions) instructions=1; shift ;;
    *) echo "usage: bench/compile_time.sh [--runs N] [--instructions]" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo '#include <duet/duet.hpp>' > "$work/duet.cpp"
for h in coroutine string vector memory optional variant span system_error stop_token duet/detail/chrono.hpp uv.h; do
  echo "#include <$h>"
done > "$work/floor.cpp"

compile=(g++ -std=c++20 -O0 -Iinclude -c)
for ((i = 0; i < runs; i++)); do
  order="duet floor"
  ((i % 2)) && order="floor duet"
  for tu in $order; do
    /usr/bin/time -f "$tu %e" "${compile[@]}" "$work/$tu.cpp" -o "$work/out.o" 2>&1 >/dev/null | tail -1
  done
done > "$work/times"

median() {  # NAME: median wall seconds of NAME's compilations
  awk -v n="$1" '$1 == n { print $2 }' "$work/times" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}
duet=$(median duet)
floor=$(median floor)
echo "== compile time, g++ $(g++ -dumpfullversion) -std=c++20 -O0, median of $runs"
echo "| translation unit | seconds |"
echo "| --- | --- |"
echo "| standard + libuv headers the API uses (floor) | $floor |"
echo "| <duet/duet.hpp> | $duet |"
awk -v d="$duet" -v f="$floor" 'BEGIN { printf "duet.hpp / floor = %.2f; the duet headers add %.2f s\n", d / f, d - f }'

if ((instructions)); then
  command -v valgrind >/dev/null || { echo "--instructions needs valgrind" >&2; exit 1; }
  count() {  # TU: millions of instructions cc1plus runs for it
    # The driver's own cc1plus command line (-###), run under valgrind.
    local cmd
    cmd=$("${compile[@]}" "$work/$1.cpp" -o "$work/out.o" -### 2>&1 | grep -E '^ "?[^ ]*cc1plus' | tr -d '"' |
      sed -E 's| -o [^ ]+\.s| -o /dev/null|')
    # shellcheck disable=SC2086  # the command line is split into words on purpose
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null $cmd 2>&1 >/dev/null |
      awk '/I *refs/ { gsub(",", "", $NF); printf "%.0f", $NF / 1e6 }'
  }
  d=$(count duet)
  f=$(count floor)
  echo "cc1plus instructions (millions): floor $f, <duet/duet.hpp> $d; the duet headers add $((d - f)) M"
fi
