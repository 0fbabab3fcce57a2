#!/usr/bin/env bash
# The main job: build, then warm the cache with the built-in MiniMax-M3 preset
# for every arch this machine can build, and show what it did.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
./build/sparsejit archs
./build/sparsejit warm --preset minimax-m3 "$@"
./build/sparsejit cache status
