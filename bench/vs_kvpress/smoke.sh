#!/usr/bin/env bash
# End-to-end smoke test: kvsqueeze exports a few RULER samples, both engines run them
# with the same press settings, then answers, kept positions and logits are compared.
#
#   bench/vs_kvpress/smoke.sh [MODEL.gguf]
#
# Environment: KVSQUEEZE (binary), HAYSTACK, OUT (work folder), THREADS, SAMPLES,
# LENGTH, PRESETS, RATIO, WINDOW, KERNEL, VS_KVPRESS_VENV. Everything runs under nice.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
K="${KVSQUEEZE:-$root/build/release/src/kvsqueeze}"
MODEL="${1:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
HAYSTACK="${HAYSTACK:-$root/models/paul_graham_essays.txt}"
OUT="${OUT:-/tmp/vs_kvpress}"
THREADS="${THREADS:-2}"
SAMPLES="${SAMPLES:-2}"
LENGTH="${LENGTH:-1024}"
PRESETS="${PRESETS:-none,snapkv,ada-snapkv}"
RATIO="${RATIO:-0.5}"
WINDOW="${WINDOW:-32}"
KERNEL="${KERNEL:-7}"
PY="${VS_KVPRESS_VENV:-$HOME/.cache/kvsqueeze/vs-kvpress-venv}/bin/python"
N="nice -n 19"
# kvsqueeze flags that give its presses kvpress's definitions (avg pool, mean over the GQA group).
MATCH=(--window "$WINDOW" --pool-kernel "$KERNEL" --pool avg --gqa-reduce mean)

mkdir -p "$OUT"
rm -f "$OUT"/{samples,kvsqueeze,kvpress}.jsonl
echo "== export $SAMPLES samples at $LENGTH tokens"
$N "$K" eval ruler -m "$MODEL" --haystack "$HAYSTACK" --lengths "$LENGTH" --samples "$SAMPLES" \
  --subtasks niah_single_number --chat off --export-samples "$OUT/samples.jsonl" >/dev/null

echo "== kvsqueeze"
for mode in "" --question-agnostic; do
  $N "$K" eval ruler -m "$MODEL" --haystack "$HAYSTACK" --lengths "$LENGTH" --samples "$SAMPLES" \
    --subtasks niah_single_number --chat off --presets "$PRESETS" --ratios "$RATIO" "${MATCH[@]}" $mode \
    -t "$THREADS" --no-progress --out "$OUT/kvsqueeze.jsonl" >/dev/null
done

echo "== kvpress"
$N "$PY" "$here/run_kvpress.py" -m "$MODEL" --input "$OUT/samples.jsonl" --presets "$PRESETS" --ratios "$RATIO" \
  --modes aware,agnostic --window "$WINDOW" --kernel "$KERNEL" --threads "$THREADS" --out "$OUT/kvpress.jsonl"
python3 "$here/compare_results.py" "$OUT/kvsqueeze.jsonl" "$OUT/kvpress.jsonl" | tee "$OUT/results.md"

echo "== kept positions, snapkv, question-agnostic, first sample"
python3 - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
s = json.loads(open(f"{out}/samples.jsonl").readline())
open(f"{out}/context.txt", "w").write(s["context"])
open(f"{out}/question.txt", "w").write(s["question"])
open(f"{out}/context_ids.json", "w").write(json.dumps(s["context_ids"]))
open(f"{out}/ids.txt", "w").write(",".join(map(str, s["context_ids"] + s["question_ids"])))
EOF
# generate reads text: check it tokenizes to the exported ids (true with --chat off).
"$K" tokenize -m "$MODEL" -f "$OUT/context.txt" | python3 -c "import json,sys; \
  sys.exit(0 if json.load(sys.stdin) == json.load(open('$OUT/context_ids.json')) else 'context text does not tokenize to context_ids')"
$N "$K" generate -m "$MODEL" --context "$OUT/context.txt" --question "$OUT/question.txt" -n 0 --greedy \
  --press snapkv --ratio "$RATIO" "${MATCH[@]}" -t "$THREADS" --dump-selection "$OUT/kept_kvsqueeze.json" >/dev/null 2>&1
$N "$PY" "$here/run_kvpress.py" -m "$MODEL" --input "$OUT/samples.jsonl" --presets snapkv --ratios "$RATIO" \
  --modes agnostic --window "$WINDOW" --kernel "$KERNEL" --threads "$THREADS" --dump-kept "$OUT/kept_kvpress.json"
python3 "$here/compare_kept.py" "$OUT/kept_kvsqueeze.json" "$OUT/kept_kvpress.json" | tail -1

echo "== full-cache logits on the first sample's ids"
$N "$K" logits -m "$MODEL" --ids-file "$OUT/ids.txt" --kv-type f32 -t "$THREADS" --out "$OUT/logits_kvsqueeze.f32"
$N "$PY" "$here/compare_logits.py" -m "$MODEL" --ids-file "$OUT/ids.txt" --logits "$OUT/logits_kvsqueeze.f32" \
  --threads "$THREADS"
rm -f "$OUT/logits_kvsqueeze.f32"
