#!/usr/bin/env bash
# Sets up (packages + build) and runs the whole test suite: ctest on the optimised build,
# then on the AddressSanitizer + UBSan build, then the Python package's pytest suite, then
# every libFuzzer target for 30 s (clang, scripts/fuzz.sh).
# Usage: scripts/test.sh            all four
#        scripts/test.sh release    one of them (release | asan | debug | python | fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."
presets=("$@")
((${#presets[@]})) || presets=(release asan python fuzz)
for p in "${presets[@]}"; do
  echo "== $p =="
  if [ "$p" = python ]; then
    scripts/test_python.sh
    continue
  fi
  if [ "$p" = fuzz ]; then
    scripts/fuzz.sh 30
    continue
  fi
  scripts/setup.sh "$p"
  ctest --preset "$p" --parallel 2
done
