#!/usr/bin/env bash
# Runs the whole benchmark on a CUDA machine: sparsejit's kernels (C++ API),
# the Triton port of vLLM's reference algorithm on the same inputs, float64
# checks of both, the floor under small-batch decode (bench/decode_floor.py),
# and the pictures; then the same for fp8 e4m3fn K/V with scalar scales
# (*_fp8.jsonl, results_fp8.md, *_fp8.png).
#
#   bash bench/run.sh [OUTDIR]         (default bench/results)
#
# Environment: SPARSEJIT_BENCH_BIN (default: .benchbin/sparsejit_bench, else
# build-bench/sparsejit_bench), BENCH_DUMP_DIR (inputs, several hundred MiB;
# default a temp dir, removed at the end), BENCH_QUICK=1 (fewer repetitions),
# BENCH_FILTER=substring[,substring...] (a subset of the cases), BENCH_FP8=0
# (no fp8 pass).
set -euo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-bench/results}
mkdir -p "$OUTDIR"
BIN=${SPARSEJIT_BENCH_BIN:-}
if [[ -z "$BIN" ]]; then
  for b in .benchbin/sparsejit_bench build-bench/sparsejit_bench build/sparsejit_bench; do
    [[ -x "$b" ]] && BIN=$b && break
  done
fi
[[ -n "$BIN" ]] || { echo "no sparsejit_bench binary (build it: ninja -C build-bench sparsejit_bench)" >&2; exit 1; }
DUMP=${BENCH_DUMP_DIR:-$(mktemp -d /tmp/sjbench-dump.XXXXXX)}
export SPARSEJIT_CACHE_DIR=${SPARSEJIT_CACHE_DIR:-$(mktemp -d /tmp/sjbench-cache.XXXXXX)}
EXTRA=()
[[ "${BENCH_QUICK:-0}" == 1 ]] && EXTRA+=(--quick)
[[ -n "${BENCH_FILTER:-}" ]] && EXTRA+=(--filter "$BENCH_FILTER")

{
  date -u +"date %Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader 2>/dev/null || true
  python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)' 2>/dev/null || true
} >"$OUTDIR/card.txt"

# One pass: our kernels (inputs dumped to DUMP_DIR), then the Triton port on those inputs.
#   run_pass SUFFIX DUMP_DIR [sparsejit_bench arguments]  -> ours$SUFFIX.jsonl, triton$SUFFIX.jsonl
run_pass() {
  local sfx=$1 dump=$2 t args
  shift 2
  args=${*:+ $*}
  t=$SECONDS
  "$BIN" "$@" --out "$OUTDIR/ours$sfx.jsonl" --dump-dir "$dump" "${EXTRA[@]}" 2>"$OUTDIR/ours$sfx.log" ||
    echo "sparsejit_bench$args exit $?" >>"$OUTDIR/ours$sfx.log"
  echo "sparsejit_bench$args: $((SECONDS - t)) s" >>"$OUTDIR/card.txt"
  t=$SECONDS
  python3 bench/triton_baseline.py --dump-dir "$dump" --ours "$OUTDIR/ours$sfx.jsonl" --out "$OUTDIR/triton$sfx.jsonl" "${EXTRA[@]}" \
    2>"$OUTDIR/triton$sfx.log" || echo "triton_baseline$args exit $?" >>"$OUTDIR/triton$sfx.log"
  echo "triton_baseline$args: $((SECONDS - t)) s" >>"$OUTDIR/card.txt"
}

run_pass "" "$DUMP"
t2=$SECONDS
python3 bench/decode_floor.py --out "$OUTDIR/decode_floor.jsonl" >/dev/null 2>"$OUTDIR/floor.log" || echo "decode_floor exit $?" >>"$OUTDIR/floor.log"
echo "decode_floor: $((SECONDS - t2)) s" >>"$OUTDIR/card.txt"
python3 bench/plot.py --ours "$OUTDIR/ours.jsonl" --triton "$OUTDIR/triton.jsonl" --floor "$OUTDIR/decode_floor.jsonl" --outdir "$OUTDIR" >/dev/null
if [[ "${BENCH_FP8:-1}" == 1 ]]; then
  run_pass _fp8 "$DUMP/fp8" --kv-fp8
  python3 bench/plot.py --ours "$OUTDIR/ours_fp8.jsonl" --triton "$OUTDIR/triton_fp8.jsonl" --outdir "$OUTDIR" --suffix _fp8 >/dev/null
fi
[[ -n "${BENCH_DUMP_DIR:-}" ]] || rm -rf "$DUMP"
echo "results in $OUTDIR (results.md, results_fp8.md, *.png, *.jsonl)"
