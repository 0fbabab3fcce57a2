#!/usr/bin/env bash
# The whole test suite: unit, compile-only (real toolchains), CLI and GPU tests
# (the GPU ones skip visibly on machines without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
cd build
ctest --output-on-failure -j "$(nproc)" --timeout 900
