#!/usr/bin/env bash
# A/B timing of kernel variants in one lease (the GPU machine): runs `sparsejit_bench --quick`
# for every side in turn, REPS times over, so drifts of the card hit every side alike.
#
#   bash bench/ab.sh OUTDIR FILTERS REPS SIDE [SIDE...]
#
# FILTERS: sparsejit_bench's --filter (comma-separated case-name substrings, e.g.
#          corr_B32_S8192,corr_B128_S8192).
# SIDE:    name:binary[:extra_flags[:config_dir[:template_dir]]]
#          extra_flags go to SPARSEJIT_EXTRA_FLAGS ('~' stands for a space), config_dir to
#          SPARSEJIT_CONFIG_DIR (an arch-table variant), template_dir to SPARSEJIT_TEMPLATE_DIR
#          (another template tree; only where the host mirrors of both trees agree).
# BENCH_ARGS: more sparsejit_bench arguments for every side (e.g. --kv-fp8).
#
# Each side compiles into a cache of its own. Results: OUTDIR/<name>_<rep>.jsonl and
# OUTDIR/<name>.log; `python3 bench/ab_summary.py OUTDIR name1,name2,...` tabulates them.
set -uo pipefail
[[ $# -ge 4 ]] || { sed -n '2,17p' "$0" >&2; exit 2; }
out=$1 filters=$2 reps=$3
shift 3
mkdir -p "$out"
caches=$(mktemp -d /tmp/sparsejit-ab.XXXXXX)
status=0
for ((r = 1; r <= reps; ++r)); do
  for side in "$@"; do
    IFS=: read -r name bin flags cfg tpl <<<"$side"
    [[ -n "$name" && -x "$bin" ]] || { echo "ab.sh: bad side '$side' (name:binary[:flags[:config_dir[:template_dir]]])" >&2; exit 2; }
    SPARSEJIT_CACHE_DIR="$caches/$name" SPARSEJIT_EXTRA_FLAGS="${flags//\~/ }" SPARSEJIT_CONFIG_DIR="$cfg" \
      SPARSEJIT_TEMPLATE_DIR="$tpl" "$bin" --quick --filter "$filters" ${BENCH_ARGS:-} --out "$out/${name}_$r.jsonl" \
      >>"$out/$name.log" 2>&1 || { echo "ab.sh: $name (repetition $r) failed: see $out/$name.log" >&2; status=1; }
  done
done
rm -rf "$caches"
exit $status
