#!/usr/bin/env bash
# scripts/same-code.py on two configs (an sm_90 decode through the producer's list, an
# sm_80 prefill through the general list): a comment, and unused namespace-scope
# constants (device globals under NVRTC's -default-device, which renumber symbols; a zero
# one lands in .nv.global, the other in .nv.global.init),
# leave every code object identical (exit 0); a change to the general list's page mask
# changes the prefill alone (exit 1). Skips (77) where NVRTC cannot build sm_90 and sm_80.
set -uo pipefail
bin=${1:?sparsejit binary}
src=${2:?source dir}
if ! "$bin" --json archs | python3 -c '
import json, sys
ok = {a["target"] for a in json.load(sys.stdin) if a.get("buildable")}
sys.exit(0 if {"sm_90", "sm_80"} <= ok else 1)'; then
  echo "SKIP: sm_90 and sm_80 are not both buildable here (no NVRTC)"; exit 77
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
{ "$bin" emit --op decode --arch sm_90 --head-dim 128 --topk 16 --gqa-group 16 --launch small_batch
  "$bin" emit --op prefill --arch sm_80 --head-dim 64 --topk 8 --gqa-group 4; } | sed -n 's#^// config: ##p' > "$work/m.jsonl"
[ "$(wc -l < "$work/m.jsonl")" -eq 2 ] || { echo "FAIL: expected 2 configs from emit"; exit 1; }
cp -r "$src/templates" "$work/comment" && cp -r "$src/templates" "$work/unused" && cp -r "$src/templates" "$work/code"
sed -i '1i // a comment that changes no code\n' "$work/comment/attention_nv.cu"
sed -i 's#^constexpr int kBlock = 128;#&\nconstexpr int kUnusedBySameCodeTest = 7;\nconstexpr bool kUnusedZeroBySameCodeTest = false;#' "$work/unused/attention_nv.cu"
cmp -s "$src/templates/attention_nv.cu" "$work/unused/attention_nv.cu" && { echo "FAIL: the kBlock line this test extends is gone"; exit 1; }
sed -i 's#if (page < 0 || page >= p.num_pages) blk = -1;  // unmapped or beyond the KV cache: masked#if (page < 0 || page >= p.num_pages) { blk = -1; page = -1; }#' "$work/code/attention_nv.cu"
cmp -s "$src/templates/attention_nv.cu" "$work/code/attention_nv.cu" && { echo "FAIL: the page-mask line this test edits is gone"; exit 1; }
py() { python3 "$src/scripts/same-code.py" --sparsejit "$bin" --manifest "$work/m.jsonl" -j 2 embedded "$1"; }
out=$(py "$work/comment"); rc=$?
echo "$out"; [ "$rc" -eq 0 ] || { echo "FAIL: a comment changed code (rc $rc)"; exit 1; }
out=$(py "$work/unused"); rc=$?
echo "$out"; [ "$rc" -eq 0 ] || { echo "FAIL: an unused constant changed code (rc $rc)"; exit 1; }
out=$(py "$work/code"); rc=$?
echo "$out"; [ "$rc" -eq 1 ] || { echo "FAIL: a code change went unseen (rc $rc)"; exit 1; }
echo "$out" | grep -q '^differs: {"op":"prefill","arch":"sm_80"' || { echo "FAIL: the prefill is not the one listed"; exit 1; }
[ "$(echo "$out" | grep -c '^differs:')" -eq 1 ] || { echo "FAIL: the decode should be unchanged"; exit 1; }
echo "PASS"
