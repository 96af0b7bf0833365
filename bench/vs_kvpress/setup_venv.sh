#!/usr/bin/env bash
# Creates (or checks) the virtual environment run_kvpress.py runs in.
# Idempotent: when every pinned package is already installed at its version, it
# returns without touching the network.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${VS_KVPRESS_VENV:-$HOME/.cache/kvsqueeze/vs-kvpress-venv}"
req="$here/requirements.txt"
python="${PYTHON:-python3}"

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
py="$venv/bin/python"

# Pins still missing or at another version ("+cpu" local tags count as a match).
missing() {
  "$py" - "$req" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
for line in open(sys.argv[1]):
    spec = line.split("#")[0].strip()
    if not spec:
        continue
    name, want = spec.split("==")
    try:
        have = version(name).split("+")[0]
    except PackageNotFoundError:
        have = None
    if have != want:
        print(spec)
PY
}

todo="$(missing)"
if [ -z "$todo" ]; then
  echo "vs-kvpress venv ready: $venv"
  exit 0
fi
echo "installing into $venv:" $todo
# torch first and exactly pinned: `pip install torch==2.13.0` takes the CPU build that lies
# on this machine's disk; left to kvpress's range, pip would fetch a multi-GB CUDA build.
torch_pin="$(grep -E '^torch==' "$req" | cut -d' ' -f1)"
if echo "$todo" | grep -q '^torch=='; then
  "$py" -m pip install "$torch_pin"
fi
"$py" -m pip install -r "$req"
[ -z "$(missing)" ] || { echo "still missing after install:"; missing; exit 1; }
echo "vs-kvpress venv ready: $venv"
