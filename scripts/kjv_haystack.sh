#!/usr/bin/env bash
# Writes King James Bible verses (Genesis to Matthew, ~3,800 verses) as plain filler text
# for `kvsqueeze eval niah|ruler --haystack FILE`. Needs the Debian packages bible-kjv and
# bible-kjv-text (installed by scripts/setup.sh). The retrieval-1k fixture was trained on
# this text. Usage: scripts/kjv_haystack.sh OUT.txt
set -euo pipefail
out="${1:?usage: $0 OUT.txt}"
command -v bible >/dev/null || { echo "error: 'bible' not found (apt-get install bible-kjv bible-kjv-text)" >&2; exit 1; }
bible -f "Genesis 1:1-50:26" "Exodus 1:1-40:38" "Psalms 1:1-50:6" "Isaiah 1:1-40:31" "Matthew 1:1-28:20" > "$out.tmp"
[ -s "$out.tmp" ] || { echo "error: bible printed nothing" >&2; rm -f "$out.tmp"; exit 1; }
mv "$out.tmp" "$out"
