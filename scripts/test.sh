#!/usr/bin/env bash
# The README's test command. Installs the Debian packages duet needs (as root; otherwise prints the
# apt-get line and stops), then configures, builds and runs the whole test suite under the `release`
# preset, again under `asan` (AddressSanitizer + UndefinedBehaviorSanitizer), and under `tsan`
# (ThreadSanitizer). Warnings are errors. Usage: scripts/test.sh [PRESET ...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/deps.sh
duet_ensure_packages

presets=("$@")
((${#presets[@]})) || presets=(release asan tsan)
jobs=$(nproc)

for preset in "${presets[@]}"; do
  echo "== $preset: configure, build, test"
  cmake --preset "$preset" -DDUET_WARNINGS_AS_ERRORS=ON > /dev/null
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset" -j "$jobs"
done
