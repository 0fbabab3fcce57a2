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

  --steal-model N [--gpc-map gpc_map.json]
      what dynamic balancing (work stealing) could buy for workgroups of N sub-tiles each,
      from the measured per-workgroup speeds; bench/gpc_map.cu writes the SM -> GPC map.
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
    ap.add_argument("--steal-model", type=int, default=0, metavar="N",
                    help="also model dynamic balancing (work stealing) for workgroups of N sub-tiles each")
    ap.add_argument("--gpc-map", help="JSON from bench/gpc_map.cu: model thieves from the same GPC too")
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
    if args.steal_model:
        steal_model(calls, args.steal_model, args.gpc_map)


def steal_model(calls, n, gpc_map):
    """What dynamic balancing could buy, from the measured per-workgroup speeds.

    Workgroup w finishes its k-th sub-tile at m6 + k * tau_w (tau_w its measured period over
    n sub-tiles), its last at m7, and ends e_w = m10 - m7 later (key-split merge, store). A
    thief whose own list ran out takes the last unstarted sub-tile of the workgroup projected
    to end last: it streams it in at its own period after a steal latency L (the victim's
    Q and pages: dependent loads), multiplies it, reduces it (e_w again, a partial), and the
    pair's output waits for a cross-workgroup merge M more. Only steals that move the call's
    end earlier are taken. Variants: thieves from any SM, from the victim's GPC only (with
    --gpc-map), and one sub-tile per thief and victim. Reported per (L, M): the median over
    calls of the last end, against the measured last end and a fluid bound (work perfectly
    divisible, no cost). It is an upper bound: it charges nothing to workgroups that do not
    steal, and the implementation measured in docs/PERF.md (ninth session) cost more."""
    gpc_of = {}
    if gpc_map:
        import json
        with open(gpc_map) as f:
            for g, members in enumerate(json.load(f)["gpcs"]):
                for s in members:
                    gpc_of[s] = g
    print(f"  steal model ({n} sub-tiles a workgroup; µs after the call's first wait, median over {len(calls)} calls):")
    real, fluid = [], []
    results = defaultdict(list)
    for c in calls:
        t0 = min(r["m"][1] for r in c)
        wg = [{"a": (r["m"][6] - t0) / 1e3, "tau": (r["m"][7] - r["m"][6]) / 1e3 / (n - 1), "e": (r["m"][10] - r["m"][7]) / 1e3,
               "g": gpc_of.get(r["sm"], 0)} for r in c]
        real.append(max(w["a"] + (n - 1) * w["tau"] + w["e"] for w in wg))
        # Fluid: the time T by which the workgroups' summed rates cover all sub-tiles, plus the median end.
        lo, hi = 0.0, 2 * real[-1]
        for _ in range(60):
            mid = (lo + hi) / 2
            done = sum(max(0.0, (mid - w["a"]) / w["tau"] + 1) for w in wg)
            lo, hi = (mid, hi) if done < n * len(wg) else (lo, mid)
        fluid.append(hi + st.median(w["e"] for w in wg))
        for lat in (0.5, 1.0, 2.0):
            for merge in (0.0, 1.0):
                for local in ((False, True) if gpc_of else (False,)):
                    results[(lat, merge, local, 0)].append(simulate(wg, n, lat, merge, local))
                results[(lat, merge, False, 1)].append(simulate(wg, n, lat, merge, False, once=True))
    print(f"    measured last end {st.median(real):.2f}; fluid bound {st.median(fluid):.2f}")
    for (lat, merge, local, once), ends in sorted(results.items()):
        scope = "same GPC" if local else "any SM"
        scope += ", one sub-tile per thief" if once else ""
        print(f"    L {lat:.1f}, M {merge:.1f}, thieves from {scope:8s}: last end {st.median(ends):.2f} "
              f"({st.median(ends) - st.median(real):+.2f})")


def simulate(wg, n, lat, merge, local, once=False):
    own = [n] * len(wg)          # sub-tiles each workgroup still keeps for itself
    stolen_end = [0.0] * len(wg)  # when the stolen parts of each pair are reduced
    free_at = [w["a"] + (n - 1) * w["tau"] for w in wg]  # when each thief's math warps are free
    stole = [False] * len(wg)  # once: each thief takes one sub-tile, each victim loses one

    def end(v):
        w = wg[v]
        mine = w["a"] + (own[v] - 1) * w["tau"] + w["e"]
        return max(mine, stolen_end[v] + merge) if stolen_end[v] else mine

    while True:
        v = max(range(len(wg)), key=end)  # the pair the call ends with
        best = None
        for t in range(len(wg)):
            if t == v or own[v] <= 1 or (local and wg[t]["g"] != wg[v]["g"]) or (once and (stole[t] or stolen_end[v])):
                continue
            w = wg[t]
            # The stolen tile streams in after the steal latency, overlapped with the thief's own reduction.
            arrives = max(free_at[t] + w["e"], free_at[t] + lat + w["tau"])
            done = arrives + w["e"]
            if best is None or done < best[0]:
                best = (done, t)
        if best is None:
            return end(v)
        done, t = best
        before = end(v)
        own[v] -= 1
        prev = stolen_end[v]
        stolen_end[v] = max(stolen_end[v], done)
        if max(end(v), end(t)) >= before:  # no gain: undo, and the call ends with v
            own[v] += 1
            stolen_end[v] = prev
            return before
        free_at[t] = done  # the thief is busy until its stolen part is reduced
        stole[t] = True


if __name__ == "__main__":
    main()
