#!/usr/bin/env bash
# The README's test command. Installs the Debian packages duet needs (as root; otherwise prints the
# apt-get line and stops), then configures, builds and runs the whole test suite under each preset:
#   release   optimised; then the 1,000,000-request soak (`ctest --preset soak`)
#   asan      AddressSanitizer + UndefinedBehaviorSanitizer, built with gcov: then the line coverage
#             of src/ (gcovr) and of include/ (scripts/line_coverage.py), each at least 85%
#   tsan      ThreadSanitizer, on the tests of code that crosses threads
#   fuzz      the libFuzzer fuzzers (clang-14), a bounded number of inputs each (fuzz/run.sh goes longer)
# Coverage rides on the asan build (one build instead of two: CI stays well inside its time).
# Warnings are errors. Usage: scripts/test.sh [PRESET ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/deps.sh
duet_ensure_packages clang-14 libclang-rt-14-dev gcovr  # the fuzzers, the coverage of src/

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
      # src/ is compiled into the library alone: its objects are all gcovr needs to read.
      gcovr --root . --filter 'src/' --exclude-unreachable-branches --print-summary --fail-under-line 85 \
        "build/$preset/CMakeFiles/duet.dir"
      # Most of an operation's logic is in header templates, compiled into every test: include/ is
      # counted over all of them, on all cores (gcovr 5.2 stops on the headers' coroutine functions).
      echo "== coverage: lines of include/ run by the tests (at least 85%)"
      scripts/line_coverage.py "build/$preset" include --fail-under 85
      ;;
  esac
done
