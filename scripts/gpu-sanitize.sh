#!/usr/bin/env bash
# Runs the out-of-range GPU tests (tests/test_gpu_oob.cpp) and the GPU
# correctness tests under compute-sanitizer memcheck on an NVIDIA GPU: no
# kernel may read or write out of bounds for top-k ids beyond the block table,
# pages beyond the KV cache, or negative/huge seq_lens. Any error fails.
#   bash scripts/gpu-sanitize.sh [build dir] [gtest filter]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
filter="${2:-GpuOutOfRange*}"
cs="$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)"
[[ -x "$cs" ]] || { echo "compute-sanitizer not found (CUDA toolkit)" >&2; exit 2; }
[[ -x "$build/sparsejit_tests" ]] || { echo "$build/sparsejit_tests not built (bash scripts/build.sh)" >&2; exit 2; }
for tool in memcheck initcheck; do
  echo "== compute-sanitizer --tool $tool: $filter"
  "$cs" --tool "$tool" --error-exitcode 1 --print-limit 20 \
    "$build/sparsejit_tests" --gtest_filter="$filter" --gtest_brief=1
done
echo "== compute-sanitizer: clean"
