#!/usr/bin/env bash
# Builds llama.cpp natively (-DGGML_NATIVE=ON: every instruction set this CPU has) from
# the git bundle of its source that the npm package node-llama-cpp carries: the anchor
# for the server benchmark (llama-server) and for speed comparisons (llama-bench, and
# the static libraries with their headers, which bench/vs_llamacpp.sh --native links its
# timing program against: a build tuned to this machine rather than the prebuilt
# libraries' runtime dispatch). Cached after the first build (about 10 minutes on 2
# cores); prints the bin folder (lib/ and include/ lie beside it).
#
# Cache: ${KVSQUEEZE_CACHE:-~/.cache/kvsqueeze}/llama.cpp-native-VERSION/{bin,lib,include}
set -euo pipefail

NLC_VERSION=3.22.1
cache=${KVSQUEEZE_CACHE:-$HOME/.cache/kvsqueeze}/llama.cpp-native-$NLC_VERSION
jobs=${JOBS:-2}

die() { echo "error: $*" >&2; exit 1; }

if [[ ! -x $cache/bin/llama-server || ! -x $cache/bin/llama-bench || ! -f $cache/lib/libllama.a ]]; then
  for tool in npm git tar cmake; do command -v $tool >/dev/null || die "$tool is required to build llama.cpp"; done
  echo "building llama.cpp (node-llama-cpp $NLC_VERSION's source) natively into $cache" >&2
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/llamacpp-build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-llama-cpp@$NLC_VERSION" >/dev/null) \
    || die "npm could not download node-llama-cpp $NLC_VERSION (offline?)"
  tar xzf "$tmp/node-llama-cpp-$NLC_VERSION.tgz" -C "$tmp" package/llama/gitRelease.bundle
  git clone --quiet "$tmp/package/llama/gitRelease.bundle" "$tmp/source"
  cmake -S "$tmp/source" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >/dev/null
  cmake --build "$tmp/build" -j "$jobs" --target llama-server llama-bench >/dev/null
  mkdir -p "$tmp/done/bin" "$tmp/done/lib" "$tmp/done/include"
  cp "$tmp/build/bin/llama-server" "$tmp/build/bin/llama-bench" "$tmp/done/bin/"
  find "$tmp/build" -name 'lib*.a' \( -name 'libllama.a' -o -name 'libggml*.a' \) -exec cp {} "$tmp/done/lib/" \;
  cp "$tmp/source/include/"*.h "$tmp/source/ggml/include/"*.h "$tmp/done/include/"
  rm -rf "$cache" && mkdir -p "$(dirname "$cache")" && mv "$tmp/done" "$cache"
fi
echo "$cache/bin"
