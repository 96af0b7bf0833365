#!/usr/bin/env bash
# The Python package as a user gets it: `pip install .` into a fresh virtual environment,
# then the wheel (`pip wheel .`) into another, the pytest suite (python/tests) run in both.
# Usage: scripts/test_python.sh [pytest args...]      PYTHON=python3.x to choose the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release >/dev/null  # Debian packages, the real models (skipped when present)
python=${PYTHON:-python3}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

install_venv=build/python-venv
wheel_venv=build/python-wheel-venv
rm -rf "$install_venv" "$wheel_venv" build/python/dist
"$python" -m venv "$install_venv"
"$install_venv/bin/pip" install -q --disable-pip-version-check ".[test]"
echo "== pip install . =="
PATH="$PWD/$install_venv/bin:$PATH" "$install_venv/bin/python" -m pytest -q python/tests "$@"

# The build folder is kept between the two builds, so the wheel only relinks.
"$install_venv/bin/pip" wheel -q --disable-pip-version-check --no-deps -w build/python/dist .
"$python" -m venv "$wheel_venv"
wheel=(build/python/dist/kvsqueeze-*.whl)
"$wheel_venv/bin/pip" install -q --disable-pip-version-check "${wheel[0]}[test]"
echo "== the wheel, in a fresh virtual environment =="
PATH="$PWD/$wheel_venv/bin:$PATH" "$wheel_venv/bin/python" -m pytest -q python/tests "$@"
