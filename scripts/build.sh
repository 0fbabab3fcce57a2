#!/usr/bin/env bash
# Configures and builds sparsejit into ${BUILD_DIR:-build} (incremental).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
mkdir -p "$BUILD_DIR"
log="$BUILD_DIR/configure.log"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} ${CMAKE_ARGS:-} >"$log" 2>&1 || { cat "$log"; exit 1; }
grep '^-- sparsejit:' "$log" || true
cmake --build "$BUILD_DIR" -j "$(nproc)"
