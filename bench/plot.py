#!/usr/bin/env python3
"""Merges sparsejit_bench's and triton_baseline.py's JSON lines (and
decode_floor.py's, when given) into the pictures (per TP shape: decode
bandwidth vs batch size with the copy ceiling, prefill time vs query length)
and a markdown table (results.md; decode rows show both sides' split-K chunk
counts). Without matplotlib it writes the table and says that it drew no
pictures. --suffix names another run's files (run.sh's fp8 K/V pass:
results_fp8.md, decode_bw_tp1_fp8.png, ...); bandwidths count the bytes read
(fp8 K/V: half of bf16's)."""
import argparse
import json
import math
import os
import sys

from bench_rows import read_bytes


def load(path):
    if not os.path.exists(path):
        return []
    return [json.loads(l) for l in open(path) if l.strip()]


def fmt(x, nd=1):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.{nd}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True)
    ap.add_argument("--triton", required=True)
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--floor", default="", help="decode_floor.py's JSON lines (optional)")
    ap.add_argument("--suffix", default="", help="appended to every output file's name (e.g. _fp8)")
    a = ap.parse_args()
    ours = load(a.ours)
    tri = {r["name"]: r for r in load(a.triton) if "name" in r}
    info = next((r for r in ours if r.get("kind") == "info"), {})
    copy = next((r for r in ours if r.get("kind") == "copy"), {})
    tcopy = tri.get("torch_copy_1GiB", {})
    ceil = copy.get("GBps_read_plus_write")
    cases = [r for r in ours if r.get("kind") in ("decode", "prefill")]
    kv = next((r.get("kv_dtype", "bf16") for r in cases), "bf16")
    title_kv = ""  # the pictures' titles
    if kv != "bf16":
        mode = next((r.get("scale_mode") for r in cases), None)
        kv, title_kv = f"{kv} K/V, {mode} scales", ", fp8 K/V"
    for r in cases:
        t = tri.get(r["name"], {})
        r["t"] = t
    os.makedirs(a.outdir, exist_ok=True)

    lines = []
    lines.append(f"Card: {info.get('device', '?')} (driver {info.get('driver_version', '?')}); "
                 f"torch {tcopy.get('torch', '?')}, triton {tcopy.get('triton', '?')}.")
    lines.append(f"Copy ceiling (cuMemcpyDtoD of 1 GiB, median, (read+write)/time): {fmt(ceil, 0)} GB/s "
                 f"({fmt(copy.get('ms'), 3)} ms); torch copy_ of 1 GiB: {fmt(tcopy.get('GBps_read_plus_write'), 0)} GB/s.")
    lines.append("")
    lines.append(f"### Decode ({kv}, head_dim 128, topk 16, decode_query_len 1)")
    lines.append("")
    lines.append("| TP (H,KVH) | model | batch | seq | selected KV MiB read/call | R | split-K chunks ours / Triton | ours graph µs | ours eager µs | "
                 "Triton graph µs | Triton eager µs | Triton/ours (graph) | ours GB/s | ours % copy | Triton GB/s | Triton % copy | err ours | err Triton |")
    lines.append("|" + "---|" * 18)
    for r in cases:
        if r["kind"] != "decode":
            continue
        t = r["t"]
        og, tg = r.get("ours_graph_us"), t.get("triton_graph_us")
        ob, tb = r.get("ours_us"), t.get("triton_us")
        obw = read_bytes(r) / (ob * 1e-6) / 1e9 if ob else None
        tbw = read_bytes(r) / (tb * 1e-6) / 1e9 if tb else None
        ratio = tb / ob if (ob and tb) else None
        lines.append(f"| {r['tp']} ({r['H']},{r['KVH']}) | {r['model']} | {r['batch']} | {r['seq_label']} | {fmt(read_bytes(r) / 2**20)} | {r['R']} | "
                     f"{r.get('num_chunks', '—')} / {t.get('triton_chunks', '—')} | {fmt(og, 2)} | {fmt(r.get('ours_eager_us'), 2)} | {fmt(tg, 2)} | {fmt(t.get('triton_eager_us'), 2)} | {fmt(ratio, 2)} | "
                     f"{fmt(obw, 0)} | {fmt(100 * obw / ceil if (obw and ceil) else None)} | {fmt(tbw, 0)} | "
                     f"{fmt(100 * tbw / ceil if (tbw and ceil) else None)} | {fmt(t.get('err_ours'), 5) if t.get('err_ours') is not None else r.get('error', '—')} | "
                     f"{fmt(t.get('err_triton'), 5) if t.get('err_triton') is not None else t.get('error', '—')} |")
    lines.append("")
    lines.append(f"### Prefill ({kv}, head_dim 128, topk 16; one request of N tokens from position 0, or the ragged pair)")
    lines.append("")
    lines.append("| TP (H,KVH) | model | case | query tokens | mean selections/query | union of 4 consecutive queries (mean) | ours ms | Triton ms | "
                 "Triton/ours | err ours | err Triton |")
    lines.append("|" + "---|" * 11)
    for r in cases:
        if r["kind"] != "prefill":
            continue
        t = r["t"]
        ob, tb = r.get("ours_us"), t.get("triton_us")
        ratio = tb / ob if (ob and tb) else None
        lines.append(f"| {r['tp']} ({r['H']},{r['KVH']}) | {r['model']} | {r['seq_label']} | {r['total_q']} | {fmt(r['sel_mean'], 2)} | "
                     f"{fmt(r.get('union4'), 2)} | {fmt(ob / 1e3 if ob else None, 3)} | {fmt(tb / 1e3 if tb else None, 3)} | {fmt(ratio, 2)} | "
                     f"{fmt(t.get('err_ours'), 5) if t.get('err_ours') is not None else r.get('error', '—')} | "
                     f"{fmt(t.get('err_triton'), 5) if t.get('err_triton') is not None else t.get('error', '—')} |")
    floor = load(a.floor) if a.floor else []
    if floor:
        # Our TP1 corr seq-8192 decode at the floor's batch sizes (the floor uses those shapes).
        # TP4 / TP8 (one kv head) at 4x the batch read the same bytes through the same (query, kv head) pairs.
        def ours_at(tp):
            return {r["batch"]: r for r in cases if r["kind"] == "decode" and r["tp"] == tp and r["model"] == "corr" and r["seq_label"] == "8192"}

        ours_tp1, ours_tp4, ours_tp8 = ours_at("tp1"), ours_at("tp4"), ours_at("tp8")
        lines.append("")
        lines.append("### The floor under small-batch decode (bench/decode_floor.py: TP1 shapes, graph µs per call)")
        lines.append("")
        lines.append("| case | batch | µs | GB/s (copy: read + write) | % copy ceiling | ours (corr 8192) µs: TP1 B=batch | TP4 B=4×batch | TP8 B=4×batch |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for f in floor:
            bw, b = f.get("GBps"), f.get("batch")
            ours = [m.get(k, {}).get("ours_us") if b else None for m, k in ((ours_tp1, b), (ours_tp4, 4 * (b or 0)), (ours_tp8, 4 * (b or 0)))]
            lines.append(f"| {f['case']} | {b or '—'} | {fmt(f['us'], 2)} | {fmt(bw, 0)} | "
                         f"{fmt(100 * bw / ceil if (bw and ceil) else None)} | " + " | ".join(fmt(u, 2) for u in ours) + " |")
    md = os.path.join(a.outdir, f"results{a.suffix}.md")
    open(md, "w").write("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot.py: matplotlib is not installed: results.md written, no pictures drawn", file=sys.stderr)
        return

    tps = []
    for r in cases:
        if (r["tp"], r["H"], r["KVH"]) not in tps:
            tps.append((r["tp"], r["H"], r["KVH"]))
    for tp, H, KVH in tps:
        # decode bandwidth vs batch
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        for ax, seq in zip(axes, ("8192", "32768")):
            if not any(r["kind"] == "decode" and r["tp"] == tp and r["seq_label"] == seq for r in cases):
                # no run of this length (a filtered run): a log axis without data cannot be drawn
                ax.set_axis_off()
                ax.set_title(f"decode {tp}, seq {seq}: not run")
                continue
            for model, ls in (("corr", "-"), ("unif", "--")):
                rs = sorted([r for r in cases if r["kind"] == "decode" and r["tp"] == tp and r["model"] == model and r["seq_label"] == seq],
                            key=lambda r: r["batch"])
                if not rs:
                    continue
                xb = [r["batch"] for r in rs]
                yo = [read_bytes(r) / (r["ours_us"] * 1e-6) / 1e9 if r.get("ours_us") else float("nan") for r in rs]
                yt = [read_bytes(r) / (r["t"]["triton_us"] * 1e-6) / 1e9 if r["t"].get("triton_us") else float("nan") for r in rs]
                ax.plot(xb, yo, "o" + ls, color="tab:blue", label=f"sparsejit ({model})")
                ax.plot(xb, yt, "s" + ls, color="tab:orange", label=f"Triton port ({model})")
            if ceil:
                ax.axhline(ceil, color="k", ls=":", label="D2D copy ceiling")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("batch (requests, 1 query each)")
            ax.set_title(f"decode {tp} (H={H}, KVH={KVH}), seq {seq}" + title_kv)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("selected KV bytes / time (GB/s)")
        for ax in reversed(axes):
            if ax.axison:
                ax.legend(fontsize=8)
                break
        fig.tight_layout()
        fig.savefig(os.path.join(a.outdir, f"decode_bw_{tp}{a.suffix}.png"), dpi=110)
        plt.close(fig)
        # prefill time vs query length (one request, prefix 0: the ragged case is in the table only)
        if not any(r["kind"] == "prefill" and r["tp"] == tp and r["seq_label"] != "ragged" for r in cases):
            continue
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for model, ls in (("corr", "-"), ("unif", "--")):
            rs = sorted([r for r in cases if r["kind"] == "prefill" and r["tp"] == tp and r["model"] == model and r["seq_label"] != "ragged"],
                        key=lambda r: r["total_q"])
            if not rs:
                continue
            xq = [r["total_q"] for r in rs]
            ax.plot(xq, [r["ours_us"] / 1e3 if r.get("ours_us") else float("nan") for r in rs], "o" + ls, color="tab:blue",
                    label=f"sparsejit ({model})")
            ax.plot(xq, [r["t"]["triton_us"] / 1e3 if r["t"].get("triton_us") else float("nan") for r in rs], "s" + ls,
                    color="tab:orange", label=f"Triton port ({model})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("query tokens (one request, prefix 0)")
        ax.set_ylabel("time (ms)")
        ax.set_title(f"prefill {tp} (H={H}, KVH={KVH})" + title_kv)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(a.outdir, f"prefill_{tp}{a.suffix}.png"), dpi=110)
        plt.close(fig)
    print(open(md).read())


if __name__ == "__main__":
    main()
