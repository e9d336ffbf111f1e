#!/usr/bin/env bash
# The README's test command. Installs the Debian packages duet needs (as root; otherwise prints the
# apt-get line and stops), then configures, builds and runs the whole test suite under each preset:
#   release   optimised; then the 1,000,000-request soak (`ctest --preset soak`)
#   asan      AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan      ThreadSanitizer
#   fuzz      the libFuzzer fuzzers (clang-14), a bounded number of inputs each (fuzz/run.sh goes longer)
#   coverage  the suite under gcov, then gcovr's line coverage of src/
# Warnings are errors. Usage: scripts/test.sh [PRESET ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/deps.sh
duet_ensure_packages clang-14 libclang-rt-14-dev gcovr  # the fuzzers, the coverage report

presets=("$@")
((${#presets[@]})) || presets=(release asan tsan fuzz coverage)
jobs=$(nproc)

for preset in "${presets[@]}"; do
  echo "== $preset: configure, build, test"
  cmake --preset "$preset" -DDUET_WARNINGS_AS_ERRORS=ON > /dev/null
  [[ $preset == coverage ]] && find "build/$preset" -name '*.gcda' -delete  # counts from this run only
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset" -j "$jobs"
  case $preset in
    release)
      echo "== soak: 1,000,000 requests with mixed errors"
      ctest --preset soak
      ;;
    coverage)
      echo "== coverage: lines of src/ run by the tests"
      gcovr --root . --filter 'src/' --exclude-unreachable-branches --print-summary "build/$preset"
      ;;
  esac
done
