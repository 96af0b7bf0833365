#!/usr/bin/env bash
# Sets up (packages + build) and runs the whole test suite with ctest: first the
# optimised build, then the AddressSanitizer + UBSan build.
# Usage: scripts/test.sh            both builds
#        scripts/test.sh release    one build (release | asan | debug)
set -euo pipefail
cd "$(dirname "$0")/.."
presets=("$@")
((${#presets[@]})) || presets=(release asan)
for p in "${presets[@]}"; do
  echo "== $p =="
  scripts/setup.sh "$p"
  ctest --preset "$p" --parallel 2
done
