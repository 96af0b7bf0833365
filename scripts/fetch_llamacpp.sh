#!/usr/bin/env bash
# Fetches llama.cpp, prebuilt, from the npm registry: the anchor kvsqueeze is compared
# with (bench/vs_llamacpp.sh) and checked against (tests/test_real_models.cpp).
# @node-llama-cpp/linux-x64 holds libllama and libggml (CPU backends for each x86 level,
# picked at run time); node-llama-cpp holds a git bundle of the matching llama.cpp source,
# from which only the headers are taken. Safe to run again; prints the cache folder.
#
# Cache: ${KVSQUEEZE_CACHE:-~/.cache/kvsqueeze}/llama.cpp-npm-VERSION, with
#   bins/package/bins/linux-x64/   the shared libraries
#   source/include, source/ggml/include   the headers
set -euo pipefail

NLC_VERSION=3.22.1
cache=${KVSQUEEZE_CACHE:-$HOME/.cache/kvsqueeze}/llama.cpp-npm-$NLC_VERSION
bins=$cache/bins/package/bins/linux-x64
headers=$cache/source

die() { echo "error: $*" >&2; exit 1; }

if [[ ! -f $bins/libllama.v0.5.0.so || ! -f $headers/include/llama.h ]]; then
  for tool in npm git tar; do command -v $tool >/dev/null || die "$tool is required to fetch llama.cpp"; done
  echo "fetching llama.cpp (node-llama-cpp $NLC_VERSION) from the npm registry into $cache" >&2
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/llamacpp-npm.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/bins" "$tmp/src"
  (cd "$tmp" && npm pack --silent "@node-llama-cpp/linux-x64@$NLC_VERSION" "node-llama-cpp@$NLC_VERSION" >/dev/null) \
    || die "npm could not download node-llama-cpp $NLC_VERSION (offline?)"
  tar xzf "$tmp/node-llama-cpp-linux-x64-$NLC_VERSION.tgz" -C "$tmp/bins"
  tar xzf "$tmp/node-llama-cpp-$NLC_VERSION.tgz" -C "$tmp/src" package/llama/gitRelease.bundle
  git clone --quiet --no-checkout "$tmp/src/package/llama/gitRelease.bundle" "$tmp/source"
  git -C "$tmp/source" checkout --quiet HEAD -- include ggml/include
  rm -rf "$tmp/source/.git"
  # Move into place only when whole, so an interrupted fetch leaves nothing behind.
  rm -rf "$cache" && mkdir -p "$(dirname "$cache")"
  mkdir "$tmp/done" && mv "$tmp/bins" "$tmp/source" "$tmp/done/" && mv "$tmp/done" "$cache"
fi
ls "$bins"/libllama*.so >/dev/null 2>&1 || die "no libllama in $bins"
echo "$cache"
