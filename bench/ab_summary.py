#!/usr/bin/env python3
"""Tabulates a bench/ab.sh run: per case, each side's best time over the repetitions in µs
(decode: CUDA-graph time per call; prefill: events), decode's % of the best copy ceiling
measured in the run (of the bytes read: fp8 K/V are half of bf16's), the last side against
the first, and every repetition's value. A case that failed on a side shows its error.

  python3 bench/ab_summary.py OUTDIR name1,name2[,...]
"""
import collections
import glob
import json
import os
import sys

from bench_rows import read_bytes


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    outdir, sides = sys.argv[1], sys.argv[2].split(",")
    times = collections.defaultdict(lambda: collections.defaultdict(list))
    read, copy, errors = {}, [], collections.defaultdict(dict)
    for side in sides:
        files = glob.glob(os.path.join(outdir, f"{side}_*.jsonl"))
        if not files:
            sys.exit(f"ab_summary: no {side}_*.jsonl in {outdir}")
        for fn in files:
            with open(fn) as f:
                for line in f:
                    j = json.loads(line)
                    if j.get("kind") == "copy":
                        copy.append(j["GBps_read_plus_write"])
                    elif j.get("kind") in ("decode", "prefill"):
                        if "error" in j:
                            errors[j["name"]][side] = j["error"]
                            times[j["name"]].setdefault(side, [])  # the row shows, with the error
                            continue
                        t = j.get("ours_graph_us") if j["kind"] == "decode" else None
                        times[j["name"]][side].append(t if t is not None else j["ours_us"])
                        read[j["name"]] = read_bytes(j)
    ceiling = max(copy) if copy else None
    print(f"copy ceiling (best of the run): {ceiling:.1f} GB/s" if ceiling else "no copy measurement")
    print("| case | " + " | ".join(sides) + f" | {sides[-1]} vs {sides[0]} | all |")
    print("|---" * (len(sides) + 3) + "|")
    for name in sorted(times):
        cells, best = [], []
        for side in sides:
            v = sorted(times[name][side])
            best.append(v[0] if v else None)
            if not v:
                cells.append(f"error: {errors[name][side]}" if side in errors[name] else "-")
            elif name.startswith("decode") and ceiling and read.get(name):
                cells.append(f"{v[0]:.2f} ({read[name] / (v[0] * 1e-6) / 1e9 / ceiling * 100:.1f}%)")
            else:
                cells.append(f"{v[0]:.2f}")
        delta = f"{(best[-1] / best[0] - 1) * 100:+.2f}%" if best[0] and best[-1] else "-"
        every = " / ".join(",".join(f"{x:.2f}" for x in sorted(times[name][s])) for s in sides)
        print(f"| {name} | " + " | ".join(cells) + f" | {delta} | {every} |")


if __name__ == "__main__":
    main()
