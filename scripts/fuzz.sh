#!/usr/bin/env bash
# Builds the libFuzzer targets (clang with ASan + UBSan: the fuzz preset) and runs each for
# SECONDS (default 30) from its seeds in fuzz/corpus/<target>. What a run adds to the corpus
# stays in build/fuzz/corpus/<target>; a crashing input goes to build/fuzz/artifacts/<target>/
# and fails the script. Prints, per target, the inputs run and the edges covered.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET ...]    (CI: 30 s each; see fuzz/CMakeLists.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
(($#)) && shift
targets=("$@")
((${#targets[@]})) || targets=(gguf cache_file api_request chat_template tokenizer longbench results_file http_connection)

# Packages come from scripts/setup.sh (clang, libclang-rt, libomp); only the targets are built.
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target "${targets[@]/#/fuzz_}"

status=0
printf '%-14s %12s %8s %s\n' target inputs edges result
for t in "${targets[@]}"; do
  corpus=build/fuzz/corpus/$t artifacts=build/fuzz/artifacts/$t/ log=build/fuzz/fuzz_$t.log
  mkdir -p "$corpus" "$artifacts"
  result=ok
  # -timeout: an input that takes 10 s is a hang; -rss_limit_mb: one that needs 2 GiB a leak.
  build/fuzz/fuzz/fuzz_"$t" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts" "$corpus" "fuzz/corpus/$t" >"$log" 2>&1 || { result="FAILED (see $log)"; status=1; }
  inputs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  edges=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
  printf '%-14s %12s %8s %s\n' "$t" "$inputs" "$edges" "$result"
done
exit $status
