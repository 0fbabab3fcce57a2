#!/usr/bin/env python3
"""Where one decode call spends its time: per-step medians from the timeline marks
of templates/attention_nv.cu (docs/PERF.md, sixth session).

Build the kernels with the marks and run the calls to look at, on a CUDA machine:

  SPARSEJIT_EXTRA_FLAGS=-DSJ_TIMELINE SPARSEJIT_CACHE_DIR=/tmp/sj-timeline \\
      sparsejit_bench --quick --filter tp1_corr_B32_S8192 > timeline.log
  python3 bench/timeline.py timeline.log [--kernel sparsejit_decode]

Thread 0 of every decode workgroup prints `SJ_TIMELINE <kernel> bx by bz smid m0 .. m10`
(%globaltimer, ns). printf serializes the calls, so each call starts on an idle GPU:
the marks show a call's inner timing, not the graph throughput sparsejit_bench reports.
Calls are told apart by gaps of over 15 µs between the workgroups' mark 1. Steps
a kernel does not take (no tensor copies: marks 5 and 6; no key split: 8 and 9) read 0
and are left out.
"""
import argparse
import statistics as st
from collections import defaultdict

MARKS = ["start", "previous kernel done", "position known", "prologue done", "block list ready", "first copy issued",
         "first sub-tile in", "last sub-tile multiplied", "split O in shared memory", "split weights known", "stored"]


def read(path, kernel):
    rows = []
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) != 6 + len(MARKS) or parts[0] != "SJ_TIMELINE" or (kernel and parts[1] != kernel):
                continue
            try:
                bx, by, bz, smid, *marks = (int(x) for x in parts[2:])
            except ValueError:
                continue  # a line cut by the printf buffer
            rows.append({"cta": (bx, by, bz), "sm": smid, "m": marks})
    return rows


def calls_of(rows, gap_ns=15000):
    rows = sorted(rows, key=lambda r: r["m"][1])
    calls, cur = [], []
    for r in rows:
        if cur and r["m"][1] - cur[-1]["m"][1] > gap_ns:
            calls.append(cur)
            cur = []
        cur.append(r)
    if cur:
        calls.append(cur)
    if not calls:
        return []
    size = max(len(c) for c in calls)
    return [c for c in calls if len(c) == size]  # whole calls only (the printf buffer may cut one)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log")
    ap.add_argument("--kernel", default="", help="only this kernel name (default: every SJ_TIMELINE line)")
    args = ap.parse_args()
    calls = calls_of(read(args.log, args.kernel))
    if not calls:
        raise SystemExit(f"{args.log}: no SJ_TIMELINE lines (were the kernels built with SPARSEJIT_EXTRA_FLAGS=-DSJ_TIMELINE?)")
    print(f"{len(calls)} calls of {len(calls[0])} workgroups; µs from the workgroup's start, medians over calls of the median workgroup")
    for i, name in enumerate(MARKS):
        if i == 0 or all(r["m"][i] == 0 for c in calls for r in c):
            continue
        print(f"  {i:2d} {name:28s} {st.median(st.median(r['m'][i] - r['m'][0] for r in c) for c in calls) / 1e3:8.3f}")
    # The spread of a call: how far the workgroups' ends lie from the first start.
    firsts = [min(r["m"][1] for r in c) for c in calls]
    ends = [sorted(r["m"][10] - first for r in c) for c, first in zip(calls, firsts)]
    print("  end after the call's first wait: first %.3f, median %.3f, last %.3f" %
          tuple(st.median(e[k] for e in ends) / 1e3 for k in (0, len(ends[0]) // 2, -1)))
    # Streaming time (first sub-tile in -> last multiplied) per SM, relative to its call's median:
    # does the same SM come out slow in every call (placement), or does it move (data)?
    if all(r["m"][6] and r["m"][7] for c in calls for r in c) and len(calls) >= 2:
        per_sm = [defaultdict(list), defaultdict(list)]
        for i, c in enumerate(calls):
            med = st.median(r["m"][7] - r["m"][6] for r in c)
            for r in c:
                per_sm[i % 2][r["sm"]].append((r["m"][7] - r["m"][6]) / med)
        sms = sorted(set(per_sm[0]) & set(per_sm[1]))
        a = [st.mean(per_sm[0][s]) for s in sms]
        b = [st.mean(per_sm[1][s]) for s in sms]
        corr = st.correlation(a, b) if len(set(a)) > 1 and len(set(b)) > 1 else 0.0  # Pearson; 0 for a constant side
        both = {s: (x + y) / 2 for s, x, y in zip(sms, a, b)}
        order = sorted(both, key=both.get)
        print(f"  streaming time per SM / call median: {min(both.values()):.3f} .. {max(both.values()):.3f}; "
              f"odd vs even calls correlate {corr:.2f} over {len(sms)} SMs")
        print("  fastest SMs:", ", ".join(f"{s} ({both[s]:.3f})" for s in order[:8]))
        print("  slowest SMs:", ", ".join(f"{s} ({both[s]:.3f})" for s in order[-8:]))


if __name__ == "__main__":
    main()
