#!/usr/bin/env python3
"""The floor under small-batch decode on this GPU (issue 6): what a CUDA-graph
node costs, and what the least possible kernel with decode's access pattern
costs, timed the way bench_attention.cpp times decode.

Cases (MiniMax-M3 TP1: 4 kv heads x 128 dims, topk 16, block 128, bf16 KV):
  empty        a graph node of a one-program kernel that does nothing;
  empty x2     two dependent nodes (decode's split-K kernel + merge);
  gather       decode's dependent chain and bytes without the math: per (query,
               kv head, top-k entry) a program loads seq_lens, the top-k id, the
               block table entry, then the block's K and V (64 KiB) and writes
               one float (the sum); grid = decode's 16 chunks x pairs;
  gather/2     the same with two programs per block (twice the parallelism);
  gather/4     four programs per block;
  gather ef, gather/2 ef
               the same with the K/V loads marked evict-first in L2, as sparsejit's
               decode copies are (SJ_L2_EVICT_FIRST): the index loads stay in L2;
  copy         a device copy of the same bytes, contiguous (no chain); its GB/s
               counts read + write, like the copy ceiling.
Batches 1, 2, 8, 16, 32 of TP1 move the selected bytes of TP1 B=1, 2, 8, 16, 32 and
of TP4/TP8 B=4, 8, 32, 64, 128 (one kv head there: the same (query, kv head) pairs).
Each call of a graph uses its own top-k rows and pages, drawn from a 2 GiB
pool so nothing sits in L2 (>= 256 MiB touched per replay). Medians of 20
replays of R calls, divided by R.

  python3 bench/decode_floor.py [--out FILE]
"""
import argparse
import json
import statistics

import torch
import triton
import triton.language as tl

BLK, D, TOPK, KVH, MAX_BLOCKS = 128, 128, 16, 4, 64


@triton.jit
def _empty_kernel(x_ptr):
    pass


@triton.jit
def _gather_kernel(kv_ptr, topk_ptr, bt_ptr, seq_ptr, out_ptr, s_kvp, s_kvh, SPLIT: tl.constexpr, ROWS: tl.constexpr,
                   D: tl.constexpr, TOPK: tl.constexpr, KVH: tl.constexpr, MAX_BLOCKS: tl.constexpr, EVICT_FIRST: tl.constexpr):
    pair = tl.program_id(0)  # query * KVH + kv head
    e = tl.program_id(1) // SPLIT
    part = tl.program_id(1) % SPLIT
    q = pair // KVH
    h = pair % KVH
    seq = tl.load(seq_ptr + q)
    blk = tl.load(topk_ptr + (h * tl.num_programs(0) // KVH + q) * TOPK + e)
    total = 0.0
    if (blk >= 0) & (blk * 128 < seq):
        page = tl.load(bt_ptr + q * MAX_BLOCKS + blk).to(tl.int64)
        base = kv_ptr + page * s_kvp + h * s_kvh + part * ROWS * 2 * D
        r = tl.arange(0, ROWS)
        d = tl.arange(0, D)
        if EVICT_FIRST:
            k = tl.load(base + r[:, None] * (2 * D) + d[None, :], eviction_policy="evict_first")
            v = tl.load(base + r[:, None] * (2 * D) + D + d[None, :], eviction_policy="evict_first")
        else:
            k = tl.load(base + r[:, None] * (2 * D) + d[None, :])
            v = tl.load(base + r[:, None] * (2 * D) + D + d[None, :])
        total = tl.sum(k.to(tl.float32)) + tl.sum(v.to(tl.float32))
    tl.store(out_ptr + pair * tl.num_programs(1) + tl.program_id(1), total)


def graph_us(calls, reps=20):
    """Median per-call time of a CUDA graph holding every call in `calls` (each a no-arg function)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for c in calls:
            c()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for c in calls:
            c()
    for _ in range(3):
        g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / len(calls))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    page_elems = KVH * BLK * 2 * D
    pool_pages = (2 << 30) // (page_elems * 2)
    kv = torch.randn(pool_pages, KVH, BLK, 2 * D, device=dev).to(torch.bfloat16)
    out_file = open(args.out, "w") if args.out else None  # each row as it is measured: a later failure keeps them

    def emit(case, batch, us, kv_bytes=None, moved=1):
        r = {"case": case, "batch": batch, "us": round(us, 3)}
        if kv_bytes:
            r["kv_bytes"] = kv_bytes
            r["GBps"] = round(moved * kv_bytes / (us * 1e-6) / 1e9, 1)  # bytes moved per second
        print(json.dumps(r), flush=True)
        if out_file:
            out_file.write(json.dumps(r) + "\n")
            out_file.flush()

    x = torch.zeros(1, device=dev)
    emit("empty", 0, graph_us([lambda: _empty_kernel[(1,)](x)] * 64))
    emit("empty x2", 0, graph_us([lambda: _empty_kernel[(1,)](x)] * 128) * 2)

    for batch in (1, 2, 8, 16, 32):
        kv_bytes = batch * KVH * TOPK * BLK * 2 * D * 2
        R = max(8, (256 << 20) // kv_bytes)
        sets = []
        for _ in range(R):
            topk = torch.stack([torch.randperm(MAX_BLOCKS, device=dev)[:TOPK] for _ in range(batch * KVH)]).to(torch.int32)
            bt = torch.randint(0, pool_pages, (batch, MAX_BLOCKS), device=dev, dtype=torch.int32)
            seq = torch.full((batch,), MAX_BLOCKS * BLK, device=dev, dtype=torch.int32)
            sets.append((topk.contiguous(), bt, seq))
        for evict_first in (False, True):
            for split in (1, 2, 4):
                out = torch.empty(batch * KVH * TOPK * split, device=dev)

                def call(t=None, split=split, out=out, evict_first=evict_first):
                    topk, bt, seq = t
                    _gather_kernel[(batch * KVH, TOPK * split)](kv, topk, bt, seq, out, kv.stride(0), kv.stride(1), SPLIT=split,
                                                                ROWS=BLK // split, D=D, TOPK=TOPK, KVH=KVH, MAX_BLOCKS=MAX_BLOCKS,
                                                                EVICT_FIRST=evict_first)
                name = ("gather" if split == 1 else f"gather/{split}") + (" ef" if evict_first else "")
                emit(name, batch, graph_us([lambda t=t: call(t) for t in sets]), kv_bytes)
        n = kv_bytes // 2
        srcs = [kv.view(-1)[i * n:(i + 1) * n] for i in range(R)]
        dst = torch.empty(n, device=dev, dtype=torch.bfloat16)
        emit("copy", batch, graph_us([lambda s=s: dst.copy_(s) for s in srcs]), kv_bytes, moved=2)  # read + write
    if out_file:
        out_file.close()


if __name__ == "__main__":
    main()
