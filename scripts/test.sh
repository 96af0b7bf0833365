#!/usr/bin/env bash
# Sets up (packages + build) and runs the whole test suite: ctest on the optimised build,
# then on the AddressSanitizer + UBSan build, then the Python package's pytest suite.
# Usage: scripts/test.sh            all three
#        scripts/test.sh release    one of them (release | asan | debug | python)
set -euo pipefail
cd "$(dirname "$0")/.."
presets=("$@")
((${#presets[@]})) || presets=(release asan python)
for p in "${presets[@]}"; do
  echo "== $p =="
  if [ "$p" = python ]; then
    scripts/test_python.sh
    continue
  fi
  scripts/setup.sh "$p"
  ctest --preset "$p" --parallel 2
done
