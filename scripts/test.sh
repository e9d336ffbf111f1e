#!/usr/bin/env bash
# The README's test command. Installs the Debian packages duet needs (as root; otherwise prints the
# apt-get line and stops), then configures, builds and runs the whole test suite under each preset:
#   release   optimised; then the 1,000,000-request soak (`ctest --preset soak`)
#   asan      AddressSanitizer + UndefinedBehaviorSanitizer, built with gcov: then the line coverage
#             of src/ (gcovr) and of include/ (lcov), each at least 85%
#   tsan      ThreadSanitizer, on the tests of code that crosses threads
#   fuzz      the libFuzzer fuzzers (clang-14), a bounded number of inputs each (fuzz/run.sh goes longer)
# Coverage rides on the asan build (one build instead of two: CI stays well inside its time).
# Warnings are errors. Usage: scripts/test.sh [PRESET ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/deps.sh
duet_ensure_packages clang-14 libclang-rt-14-dev gcovr lcov  # the fuzzers, the coverage reports

presets=("$@")
((${#presets[@]})) || presets=(release asan tsan fuzz)
jobs=$(nproc)

for preset in "${presets[@]}"; do
  echo "== $preset: configure, build, test"
  cmake --preset "$preset" -DDUET_WARNINGS_AS_ERRORS=ON > /dev/null
  [[ $preset == asan ]] && find "build/$preset" -name '*.gcda' -delete  # counts from this run only
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset" -j "$jobs"
  case $preset in
    release)
      echo "== soak: 1,000,000 requests with mixed errors"
      ctest --preset soak
      ;;
    asan)
      echo "== coverage: lines of src/ run by the tests (at least 85%)"
      gcovr --root . --filter 'src/' --exclude-unreachable-branches --print-summary --fail-under-line 85 "build/$preset"
      # Most of an operation's logic is in header templates, so include/ is counted on its own. gcovr 5.2
      # stops on them (an assertion merging the coroutine functions' records), so lcov counts them.
      echo "== coverage: lines of include/ run by the tests (at least 85%)"
      lcov --quiet --capture --directory "build/$preset" --output-file "build/$preset/all.info" \
        --ignore-errors gcov,source 2> "build/$preset/lcov.log"
      lcov --quiet --extract "build/$preset/all.info" "$PWD/include/*" --output-file "build/$preset/include.info"
      lines=$(lcov --summary "build/$preset/include.info" 2>&1 | grep 'lines\.')
      echo "include/ $lines"
      percent=$(sed -E 's/.*: ([0-9.]+)%.*/\1/' <<< "$lines")
      awk -v p="$percent" 'BEGIN { exit !(p >= 85) }' || { echo "include/ line coverage under 85%"; exit 1; }
      ;;
  esac
done
