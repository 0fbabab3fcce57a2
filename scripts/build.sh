#!/usr/bin/env bash
# Configures and builds sparsejit into ${BUILD_DIR:-build} (incremental).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} ${CMAKE_ARGS:-} >"$BUILD_DIR.configure.log" 2>&1 ||
  { cat "$BUILD_DIR.configure.log"; exit 1; }
grep '^-- sparsejit:' "$BUILD_DIR.configure.log" || true
cmake --build "$BUILD_DIR" -j "$(nproc)"
