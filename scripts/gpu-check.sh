#!/usr/bin/env bash
# Every GPU check in one go, for an NVIDIA machine (the device tool's H100):
# C++ GPU tests (correctness vs float64, device layer, C ABI), the C example,
# host overhead, the Python/torch tests, and compute-sanitizer on the
# out-of-range tests. Usage: bash scripts/gpu-check.sh BIN_DIR [OUT_DIR [PART]]
# BIN_DIR holds sparsejit_tests, sparsejit, libsparsejit.so,
# sparsejit_example_minimal and sparsejit_host_overhead (stripped copies are fine).
# PART (default all) runs one share, each a few minutes on an H100 (the device
# tool allows 10 minutes a call): decode (Cases/GpuDecode), prefill
# (Cases/GpuPrefill), variants (Cases/GpuTableVariant: other arch tables), rest
# (device layer, C ABI, out-of-range, example, host overhead, Python, sanitizer),
# fp8 (the fp8 decode and prefill cases, and memcheck on two fp8 decode cases: a
# quick check of an fp8 kernel change; SPARSEJIT_EXTRA_FLAGS reaches the kernels).
# The correctness cases (Cases/*) run in GPU_CHECK_SHARDS (default 4; 5 for variants) processes at once on
# the one GPU (gtest sharding), so their kernels compile in parallel into one shared cache;
# GPU_CHECK_SHARDS=1 runs them in one process. The other tests run in one process.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:?bin dir}")
out=${2:-/tmp/sparsejit-gpu-check}
part=${3:-all}
rest='DeviceCuda*:CApi*:RuntimeHooks*:GpuOutOfRange*:GpuDependentLaunch*:Targets/*sm_90*:Reference*'
cases= serial=  # the tests run in shards, and those run in one process
case "$part" in
  all) cases='Cases/*' serial="$rest" ;;
  decode) cases='Cases/GpuDecode*' ;;
  prefill) cases='Cases/GpuPrefill*' ;;
  variants) cases='Cases/GpuTableVariant*' ;;
  rest) serial="$rest" ;;
  fp8) cases='Cases/GpuDecode.*e4m3fn*:Cases/GpuDecode.*e5m2*:Cases/GpuPrefill.*e4m3fn*:Cases/GpuPrefill.*e5m2*' ;;
  *) echo "gpu-check: PART must be all, decode, prefill, variants, rest or fp8 (got '$part')" >&2; exit 2 ;;
esac
# variants: five tests, each a whole table's worth of kernels to compile, so one process each
default_shards=4
[[ "$part" == variants ]] && default_shards=5
shards=${GPU_CHECK_SHARDS:-$default_shards}
[[ "$shards" =~ ^[1-9][0-9]*$ ]] || { echo "gpu-check: GPU_CHECK_SHARDS must be a positive integer (got '$shards')" >&2; exit 2; }
mkdir -p "$out"
export SPARSEJIT_CACHE_DIR=$(mktemp -d)
status=0
step() { echo "== $1"; shift; "$@" 2>&1 | tee -a "$out/gpu-check.log"; local rc=${PIPESTATUS[0]}; echo "== rc=$rc"; [ "$rc" -eq 0 ] || status=1; }
# sharded FILTER: the tests FILTER names, split over $shards processes that run at once (one
# shared cache: a kernel two of them need compiles once); each shard's output in turn; fails if any shard failed
sharded() {
  local i rc=0 pids=()
  for ((i = 0; i < shards; ++i)); do
    GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i "$bin/sparsejit_tests" --gtest_filter="$1" >"$out/shard$i.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || rc=1
    echo "-- shard $i of $shards"
    cat "$out/shard$i.log"
  done
  return $rc
}
# sanitize TITLE FILTER: compute-sanitizer's checks of the tests FILTER names (scripts/gpu-sanitize.sh)
sanitize() {
  mkdir -p "$out/san" && ln -sf "$bin/sparsejit_tests" "$out/san/sparsejit_tests"
  step "$1" bash scripts/gpu-sanitize.sh "$out/san" "$2"
}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/card.txt"
git rev-parse --short HEAD 2>/dev/null | tee -a "$out/card.txt"
echo "part: $part" | tee -a "$out/card.txt"
[[ -z "$cases" ]] || step "C++ GPU correctness cases ($shards shards)" sharded "$cases"
[[ -z "$serial" ]] || step "C++ GPU tests" "$bin/sparsejit_tests" --gtest_filter="$serial"
if [[ "$part" == fp8 ]]; then
  sanitize "compute-sanitizer (fp8 decode)" \
    'Cases/GpuDecode.*m3tp4_G16_D128_k16_bf16_e4m3fn_negscale*:Cases/GpuDecode.*G4_D64_k8_bf16_e5m2_scalar_A_q2_onechunk_transposed*'
fi
[[ "$part" == all || "$part" == rest ]] || exit $status
step "C example" "$bin/sparsejit_example_minimal"
step "host overhead" "$bin/sparsejit_host_overhead"
step "python" env SPARSEJIT_LIBRARY="$bin/libsparsejit.so" PYTHONPATH="$PWD/python" python3 -m pytest -q -rs -s python/tests
if command -v compute-sanitizer >/dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
  # the out-of-range tests, and the decode cases of sm_90's large, huge and small launches
  sanitize "compute-sanitizer" 'GpuOutOfRange*:Cases/GpuDecode.*largebatch*:Cases/GpuDecode.*hugebatch*:Cases/GpuDecode.*cluster*:Cases/GpuDecode.*smallbatch*'
fi
exit $status
