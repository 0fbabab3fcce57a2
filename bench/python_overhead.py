#!/usr/bin/env python3
"""Host time per call of the torch drop-ins (sparsejit.torch) on MiniMax-M3 shapes.

For decode (batch 1 and 64) and prefill (4096 tokens), with the kernels warm and
the call plans cached, it times per call:
  full          the whole Python call, kernel launch included
  python        the same call with the library's launch function replaced by a
                Python no-op: what the Python layer itself costs
  bare ctypes   one ctypes call of the library on a prepacked struct (the floor
                the Python layer adds to)
  uncached      as `python`, with the plan cache emptied before every call:
                what a miss costs (the full argument checks plus building and
                caching the plan; a little more than the checks alone, which
                is what every call cost before call plans)
plus the pieces of a cached call, each timed alone: the dict lookup, the guard
check of the tensors, the data_ptr() reads, the struct stores, the current
stream and, for decode, what a split-K workspace from torch.empty would add.

Calls run in batches of --batch, each batch timed as a whole (a clock read per
call would cost as much as a call); the stream is drained between batches,
untimed, so a full launch queue never blocks a timed call. The median batch
divided by its size is reported, with the 10th and 90th percentiles.

    SPARSEJIT_LIBRARY=build/libsparsejit.so python3 bench/python_overhead.py [--out results.json]

Exit status: 0 when every case ran or when there is no CUDA device (it says it
skipped); 1 when the library is missing or a case failed (the JSON says which).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))  # the package from the source tree

HEADS, KV_HEADS, HEAD_DIM, TOPK, BLOCK = 64, 4, 128, 16, 128
DECODE_SEQ = 8192
PREFILL_TOKENS = 4096


def write_json(path, doc):
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def skip(args, reason, status=0):
    print(f"python_overhead: skipped: {reason}")
    write_json(args.out, {"skipped": reason})
    return status


def random_topk(torch, kvh, total_q, visible_blocks, device, generator):
    """[kvh, total_q, TOPK] int32: distinct visible block ids in random order, -1 where fewer are visible."""
    max_blocks = int(visible_blocks.max())
    scores = torch.rand(kvh, total_q, max_blocks, generator=generator, device=device)
    blocks = torch.arange(max_blocks, device=device)
    scores = scores.masked_fill(blocks >= visible_blocks[None, :, None], -1.0)
    k = min(TOPK, max_blocks)
    idx = scores.topk(k, dim=-1).indices.to(torch.int32)
    keep = torch.arange(k, device=device)[None, None, :] < visible_blocks[None, :, None]
    idx = idx.masked_fill(~keep, -1)
    if k < TOPK:
        idx = torch.cat([idx, idx.new_full((kvh, total_q, TOPK - k), -1)], dim=-1)
    return idx.contiguous()


def kv_cache(torch, pages, layout, device):
    shape = (pages, 2, BLOCK, KV_HEADS, HEAD_DIM) if layout == 5 else (pages, KV_HEADS, BLOCK, 2 * HEAD_DIM)
    return torch.randn(shape, dtype=torch.bfloat16, device=device) * 0.5


def decode_case(torch, batch, layout, device, g):
    pages_per_req = DECODE_SEQ // BLOCK
    pages = batch * pages_per_req + 1
    perm = torch.randperm(pages - 1, generator=g, device=device).to(torch.int32)
    q = torch.randn(batch, HEADS, HEAD_DIM, dtype=torch.bfloat16, device=device)
    args = dict(
        q=q,
        kv_cache=kv_cache(torch, pages, layout, device),
        topk_idx=random_topk(torch, KV_HEADS, batch, torch.full((batch,), pages_per_req, device=device), device, g),
        block_table=perm.view(batch, pages_per_req).contiguous(),
        seq_lens=torch.full((batch,), DECODE_SEQ, dtype=torch.int32, device=device),
        num_kv_heads=KV_HEADS,
        sm_scale=HEAD_DIM**-0.5,
        output=torch.empty_like(q),
        decode_query_len=1,
    )
    return "decode", args


def prefill_case(torch, tokens, layout, device, g):
    pages = tokens // BLOCK + 1
    q = torch.randn(tokens, HEADS, HEAD_DIM, dtype=torch.bfloat16, device=device)
    visible = torch.arange(tokens, device=device) // BLOCK + 1  # causal, no prefix: token t sees blocks 0..t//128
    args = dict(
        q=q,
        kv_cache=kv_cache(torch, pages, layout, device),
        topk_idx=random_topk(torch, KV_HEADS, tokens, visible, device, g),
        block_table=torch.randperm(pages, generator=g, device=device).to(torch.int32).view(1, pages),
        cu_seqlens_q=torch.tensor([0, tokens], dtype=torch.int32, device=device),
        seq_lens=torch.tensor([tokens], dtype=torch.int32, device=device),
        prefix_lens=torch.zeros(1, dtype=torch.int32, device=device),
        max_query_len=tokens,
        num_kv_heads=KV_HEADS,
        sm_scale=HEAD_DIM**-0.5,
        output=torch.empty_like(q),
    )
    return "prefill", args


def time_per_call(torch, fn, args=(), iterations=300, batch=20, before=None):
    """(median, p10, p90) microseconds per call of fn(*args) over `iterations` batches of `batch` calls."""
    per_call = []
    gc.collect()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(iterations):
            torch.cuda.synchronize()
            if before is None:
                t0 = time.perf_counter_ns()
                for _ in range(batch):
                    fn(*args)
                elapsed = time.perf_counter_ns() - t0
            else:  # `before` must run before each call, untimed: time the calls one by one
                elapsed = 0
                for _ in range(batch):
                    before()
                    t0 = time.perf_counter_ns()
                    fn(*args)
                    elapsed += time.perf_counter_ns() - t0
            per_call.append(elapsed / batch / 1e3)
    finally:
        if gc_was:
            gc.enable()
    q = statistics.quantiles(per_call, n=10)
    return statistics.median(per_call), q[0], q[-1]


def cached_plan(sjt, kind, args):
    """The plan the last calls with these arguments used (the cache's own lookup)."""
    from sparsejit import _plan

    a = args
    if kind == "prefill":
        key = _plan.prefill_key(a["q"], a["num_kv_heads"], a["sm_scale"], a["max_query_len"], None, None)
        tensors = (a["q"], a["kv_cache"], a["topk_idx"], a["block_table"], a["cu_seqlens_q"], a["seq_lens"], a["prefix_lens"], a["output"])
    else:
        key = _plan.decode_key(a["q"], a["num_kv_heads"], a["sm_scale"], a["decode_query_len"], None, None)
        tensors = (a["q"], a["kv_cache"], a["topk_idx"], a["block_table"], a["seq_lens"], a["output"])
    for plan in (sjt._PREFILL if kind == "prefill" else sjt._DECODE).get(key, ()):
        if plan.check(*tensors):
            return plan, key, tensors
    raise RuntimeError(f"{kind}: no cached plan after the warm-up (not cacheable?): {sjt.plan_cache_info()}")


def bench_case(torch, sjt, name, kind, args, opts):
    import ctypes

    from sparsejit import _abi, _validate

    fn = sjt.minimax_m3_sparse_attn if kind == "prefill" else sjt.minimax_m3_sparse_attn_decode
    positional = tuple(args.values())
    timing = dict(iterations=opts.iterations, batch=opts.batch)
    for _ in range(opts.warmup):  # builds and loads the kernels, caches the plan
        fn(*positional)
    torch.cuda.synchronize()
    plan, _, tensors = cached_plan(sjt, kind, args)
    rt = plan.runtime
    lib = rt.lib
    result = {"case": name, "kind": kind, "workspace_bytes": plan.workspace_bytes, "shapes": {k: list(v.shape) for k, v in args.items() if hasattr(v, "shape")}}

    result["full"] = time_per_call(torch, fn, positional, **timing)

    launch_name = "prefill" if kind == "prefill" else "decode"
    real_launch = getattr(lib, launch_name)
    cache = sjt._prefill_plans if kind == "prefill" else sjt._decode_plans
    setattr(lib, launch_name, lambda handle, address, stream: 0)  # the Python layer alone
    try:
        result["python"] = time_per_call(torch, fn, positional, **timing)
        uncached = dict(timing, iterations=max(opts.iterations // 4, 10))
        result["uncached"] = time_per_call(torch, fn, positional, before=cache.clear, **uncached)
    finally:
        setattr(lib, launch_name, real_launch)
        cache.clear()
        fn(*positional)  # cached again
    plan, _, tensors = cached_plan(sjt, kind, args)

    # The bare ctypes call: the struct packed once, its workspace (if any) held for the whole run.
    if kind == "prefill":
        fields, _ = _validate.prefill_fields(*positional, None, None)
        packed = _abi.PREFILL_FORMAT.pack(*fields)
    else:
        fields, _ = _validate.decode_fields(*positional, None, None)
        nbytes = plan.workspace_bytes
        workspace = torch.empty(nbytes, dtype=torch.uint8, device=args["q"].device) if nbytes else None
        packed = _abi.DECODE_FORMAT.pack(*fields, workspace.data_ptr() if nbytes else 0, nbytes)
    buffer = ctypes.create_string_buffer(packed, len(packed))
    stream = sjt._raw_stream(plan.device_index)
    result["bare_ctypes"] = time_per_call(torch, real_launch, (rt.handle, ctypes.addressof(buffer), stream), **timing)
    torch.cuda.synchronize()  # a faulting kernel surfaces here, in this case

    # The pieces of a cached call, each timed alone (they need not add up exactly).
    table = sjt._PREFILL if kind == "prefill" else sjt._DECODE
    slot = sjt._slots.prefill if kind == "prefill" else sjt._slots.decode
    pieces = {
        "key + dict": (_lookup, (table, args, kind)),
        "guard check": (plan.check, tensors),
        f"data_ptr() x{len(tensors)}": (_data_ptrs, (tensors,)),
        "template + stores": (_stores, (slot, plan, tensors)),
        "current raw stream": (sjt._raw_stream, (plan.device_index,)),
    }
    if kind == "decode":  # what a call with a split-K workspace adds
        pieces["torch.empty workspace"] = (sjt._alloc_workspace, (max(plan.workspace_bytes, 16), plan.device))
    it = dict(iterations=max(opts.iterations // 2, 10), batch=opts.batch)
    result["pieces"] = {piece: time_per_call(torch, f, a, **it) for piece, (f, a) in pieces.items()}
    slot.plan = None  # _stores spoiled the template: the next real call copies it in again
    return result


def _lookup(table, a, kind):
    """The hot path's dict lookup, key included."""
    last = a["max_query_len"] if kind == "prefill" else a["decode_query_len"]
    q, nkv, sm = a["q"], a["num_kv_heads"], a["sm_scale"]
    return table[(q.shape, type(nkv), nkv, type(sm), sm, type(last), last, True, True)]


def _data_ptrs(tensors):
    for t in tensors:
        t.data_ptr()


def _stores(slot, plan, tensors):
    if slot.plan is not plan:
        slot.bytes[:] = plan.template
        slot.plan = plan
    w = slot.words
    for i, t in enumerate(tensors):
        w[i] = t.data_ptr()  # words 0..n-1: only the cost matters


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--iterations", type=int, default=300, help="timed batches per variant (default 300)")
    ap.add_argument("--batch", type=int, default=20, help="calls per timed batch (default 20)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed calls first (the first builds the kernels)")
    ap.add_argument("--layout", type=int, choices=(4, 5), default=5, help="KV cache layout: 5-D [pages,2,128,kvh,d] or 4-D")
    ap.add_argument("--device", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    opts = ap.parse_args(argv)
    if opts.quick:
        opts.iterations, opts.warmup = min(opts.iterations, 30), min(opts.warmup, 3)

    try:
        import torch
    except ImportError as e:
        return skip(opts, f"PyTorch is not installed ({e})")
    if not torch.cuda.is_available():
        return skip(opts, "no CUDA device (torch.cuda.is_available() is False)")
    import sparsejit
    import sparsejit.torch as sjt

    try:
        lib = sparsejit.load_library()
    except sparsejit.LibraryNotFoundError as e:
        print(f"python_overhead: {e}", file=sys.stderr)
        write_json(opts.out, {"error": str(e)})
        return 1

    device = torch.device("cuda", opts.device)
    torch.cuda.set_device(device)
    g = torch.Generator(device=device).manual_seed(0)
    doc = {
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "library": str(lib.path),
        "library_version": (lib.version() or b"").decode(),
        "layout": opts.layout,
        "iterations": opts.iterations,
        "batch": opts.batch,
        "units": "microseconds per call: [median, p10, p90]",
        "cases": [],
        "errors": {},
    }
    builders = [
        ("decode b=1", lambda: decode_case(torch, 1, opts.layout, device, g)),
        ("decode b=64", lambda: decode_case(torch, 64, opts.layout, device, g)),
        (f"prefill {PREFILL_TOKENS} tok", lambda: prefill_case(torch, PREFILL_TOKENS, opts.layout, device, g)),
    ]
    for name, build in builders:
        try:
            kind, args = build()
            doc["cases"].append(bench_case(torch, sjt, name, kind, args, opts))
            del args
        except Exception as e:  # noqa: BLE001 - unattended: record it, go on with the next case
            doc["errors"][name] = f"{type(e).__name__}: {e}"
            print(f"python_overhead: {name}: {type(e).__name__}: {e}", file=sys.stderr)
        torch.cuda.empty_cache()
    doc["plan_cache"] = sjt.plan_cache_info()
    print(f"plan cache: {doc['plan_cache']}")

    print(f"\n{doc['device']}, torch {doc['torch']}, Python {doc['python']}, {lib.path}")
    print("host us per call, median [p10-p90]")
    cols = [("full", "full call"), ("python", "python (no-op launch)"), ("bare_ctypes", "bare ctypes"), ("uncached", "checks every call")]
    print(f"{'case':<18}{'ws bytes':>10}" + "".join(f"{title:>26}" for _, title in cols))
    for r in doc["cases"]:
        row = "".join(f"{r[k][0]:>9.2f} [{r[k][1]:6.2f}-{r[k][2]:6.2f}]" for k, _ in cols)
        print(f"{r['case']:<18}{r['workspace_bytes']:>10}{row}")
    for r in doc["cases"]:
        parts = ", ".join(f"{k} {v[0]:.2f}" for k, v in r.get("pieces", {}).items())
        print(f"  {r['case']} pieces (us): {parts}")
    write_json(opts.out, doc)
    if opts.out:
        print(f"wrote {opts.out}")
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
