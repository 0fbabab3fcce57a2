#!/usr/bin/env bash
# The whole test suite: unit, compile-only (real toolchains), CLI and GPU tests
# (the GPU ones skip visibly on machines without a GPU), then the Python
# package's tests (pytest; its GPU tests skip visibly without torch+CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
BUILD_DIR=${BUILD_DIR:-build}
(cd "$BUILD_DIR" && ctest --output-on-failure -j "$(nproc)" --timeout 900)

# pytest: the first interpreter that has it (Debian's python3-pytest is for /usr/bin/python3).
PY=""
for cand in python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import pytest' >/dev/null 2>&1; then PY=$cand; break; fi
done
if [ -z "$PY" ]; then
  echo "sparsejit: pytest not found for python3 or /usr/bin/python3 (apt-get install python3-pytest)" >&2
  exit 1
fi
rc=0
SPARSEJIT_LIBRARY="$PWD/$BUILD_DIR/libsparsejit.so" "$PY" -m pytest -q -rs python/tests || rc=$?
# 5 = no tests collected: not a failure of the suite.
if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then exit "$rc"; fi
