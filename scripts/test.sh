#!/usr/bin/env bash
# The README's test command. Installs the Debian packages duet needs (as root; otherwise prints the
# apt-get line and stops), then configures, builds and runs the whole test suite under each preset:
#   release   optimised; then the 1,000,000-request soak (`ctest --preset soak`)
#   asan      AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan      ThreadSanitizer
#   fuzz      the libFuzzer fuzzers (clang-14), a bounded number of inputs each (fuzz/run.sh goes longer)
#   coverage  the suite under gcov, then gcovr's line coverage of src/ and of include/ (each at least 85%)
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
      # Most of an operation's logic is in header templates: include/ is counted on its own, as src/ is.
      for part in src include; do
        echo "== coverage: lines of $part/ run by the tests (at least 85%)"
        gcovr --root . --filter "$part/" --exclude-unreachable-branches --print-summary --fail-under-line 85 \
          "build/$preset"
      done
      ;;
  esac
done
