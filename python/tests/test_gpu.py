"""GPU tests (skip visibly without torch, CUDA or the library): the torch
drop-ins against a float64 reference on random inputs (both KV layouts, bf16
and fp8 KV with scalar and per-token scales), against vLLM's Triton kernels
when vLLM is importable, CUDA graph capture and replay, the refusal to compile
inside a capture, and the Python host overhead per call."""

import math
import statistics
import time

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device (torch.cuda.is_available() is False)", allow_module_level=True)

import sparsejit  # noqa: E402
import sparsejit.torch as sjt  # noqa: E402

try:
    sparsejit.load_library()
except sparsejit.LibraryNotFoundError as e:  # pragma: no cover
    pytest.skip(f"libsparsejit.so not found: {e}", allow_module_level=True)

DEV = torch.device("cuda", 0)
BLOCK = 128


def make_case(seed, *, batch, q_lens, prefix_lens, heads, kvh, d, topk, kv_dtype, scale_mode, layout, decode_query_len=None):
    """Random inputs plus float64 logical K/V ([num_blocks, 128, kvh, d]) already dequantized."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    seq_lens = [p + n for p, n in zip(prefix_lens, q_lens)]
    blocks_per_req = [math.ceil(s / BLOCK) for s in seq_lens]
    num_pages = sum(blocks_per_req) + 3
    perm = torch.randperm(num_pages, generator=g).tolist()
    max_blocks = max(blocks_per_req) + 1
    block_table = torch.zeros(batch, max_blocks, dtype=torch.int32)
    it = iter(perm)
    for b in range(batch):
        for j in range(blocks_per_req[b]):
            block_table[b, j] = next(it)
    k = torch.randn(num_pages, BLOCK, kvh, d, generator=g, dtype=torch.float64)
    v = torch.randn(num_pages, BLOCK, kvh, d, generator=g, dtype=torch.float64)
    total_q = sum(q_lens)
    q = torch.randn(total_q, heads, d, generator=g, dtype=torch.float64)
    # topk rows: distinct visible blocks in random order, -1 padding
    topk_idx = torch.full((kvh, total_q, topk), -1, dtype=torch.int32)
    t = 0
    for b in range(batch):
        for i in range(q_lens[b]):
            p = prefix_lens[b] + i
            nvis = p // BLOCK + 1
            for h in range(kvh):
                sel = torch.randperm(nvis, generator=g)[: min(topk, nvis)]
                topk_idx[h, t, : len(sel)] = sel.to(torch.int32)
            t += 1
    k_scale = v_scale = None
    fp8 = kv_dtype in (torch.float8_e4m3fn, torch.float8_e5m2)
    if fp8:
        if scale_mode == "scalar":
            ks, vs = torch.tensor([0.5], dtype=torch.float32), torch.tensor([0.25], dtype=torch.float32)
            kq, vq = (k / 0.5).to(kv_dtype), (v / 0.25).to(kv_dtype)
            k_deq, v_deq = kq.double() * 0.5, vq.double() * 0.25
        elif scale_mode == "per_token_head":
            ks = torch.rand(kvh, num_pages * BLOCK, generator=g, dtype=torch.float32) + 0.5
            vs = torch.rand(kvh, num_pages * BLOCK, generator=g, dtype=torch.float32) + 0.5
            ksv = ks.double().T.reshape(num_pages, BLOCK, kvh, 1)
            vsv = vs.double().T.reshape(num_pages, BLOCK, kvh, 1)
            kq, vq = (k / ksv).to(kv_dtype), (v / vsv).to(kv_dtype)
            k_deq, v_deq = kq.double() * ksv, vq.double() * vsv
        else:
            kq, vq = k.to(kv_dtype), v.to(kv_dtype)
            k_deq, v_deq = kq.double(), vq.double()
            ks = vs = None
        if ks is not None:
            k_scale, v_scale = ks.to(DEV), vs.to(DEV)
        kst, vst = kq, vq
    else:
        kst, vst = k.to(kv_dtype), v.to(kv_dtype)
        k_deq, v_deq = kst.double(), vst.double()
    # Assemble through a same-size integer view: CPU cat/stack may lack fp8 kernels.
    raw = torch.uint8 if kst.element_size() == 1 else torch.int16
    kr, vr = kst.view(raw), vst.view(raw)
    if layout == 4:  # [pages, kvh, 128, 2d]
        kv = torch.cat([kr.permute(0, 2, 1, 3), vr.permute(0, 2, 1, 3)], dim=-1).contiguous().view(kst.dtype)
    else:  # [pages, 2, 128, kvh, d]
        kv = torch.stack([kr, vr], dim=1).contiguous().view(kst.dtype)
    qd = q.to(torch.bfloat16)
    return dict(
        q=qd.to(DEV), q64=qd.double(), kv=kv.to(DEV), k=k_deq, v=v_deq, topk_idx=topk_idx, block_table=block_table,
        seq_lens=seq_lens, prefix_lens=prefix_lens, q_lens=q_lens, k_scale=k_scale, v_scale=v_scale, heads=heads, kvh=kvh, d=d,
    )  # fmt: skip


def reference(c, positions, req_of, sm_scale):
    """float64: query t (request req_of[t], absolute position positions[t]) over its selected blocks."""
    total_q = c["q64"].shape[0]
    out = torch.zeros(total_q, c["heads"], c["d"], dtype=torch.float64)
    g = c["heads"] // c["kvh"]
    for t in range(total_q):
        b, p = req_of[t], positions[t]
        for h in range(c["kvh"]):
            sel = [int(x) for x in c["topk_idx"][h, t] if x >= 0]
            if not sel:
                continue
            pages = c["block_table"][b, sel].long()
            keys = c["k"][pages, :, h].reshape(-1, c["d"])
            vals = c["v"][pages, :, h].reshape(-1, c["d"])
            pos = (torch.tensor(sel)[:, None] * BLOCK + torch.arange(BLOCK)[None, :]).reshape(-1)
            vis = (pos <= p) & (pos < c["seq_lens"][b])
            if not vis.any():
                continue
            qh = c["q64"][t, h * g : (h + 1) * g]
            s = (qh @ keys[vis].T) * sm_scale
            out[t, h * g : (h + 1) * g] = torch.softmax(s, dim=-1) @ vals[vis]
    return out


def run_prefill(c, sm_scale, out=None):
    cu = [0]
    for n in c["q_lens"]:
        cu.append(cu[-1] + n)
    out = torch.zeros_like(c["q"]) if out is None else out
    sjt.minimax_m3_sparse_attn(
        c["q"], c["kv"], c["topk_idx"].to(DEV), c["block_table"].to(DEV), torch.tensor(cu, dtype=torch.int32, device=DEV),
        torch.tensor(c["seq_lens"], dtype=torch.int32, device=DEV), torch.tensor(c["prefix_lens"], dtype=torch.int32, device=DEV),
        max(c["q_lens"]), c["kvh"], sm_scale, out, c["k_scale"], c["v_scale"],
    )  # fmt: skip
    return out


def prefill_positions(c):
    positions, req_of = [], []
    for b, (p0, n) in enumerate(zip(c["prefix_lens"], c["q_lens"])):
        positions += [p0 + i for i in range(n)]
        req_of += [b] * n
    return positions, req_of


def assert_close(got, want, what):
    err = (got.double().cpu() - want).abs().max().item()
    scale = max(want.abs().max().item(), 1e-6)
    assert err / scale < 2e-2, f"{what}: max abs err {err:.3e} (rel {err / scale:.3e})"


@pytest.mark.parametrize("layout", [4, 5])
@pytest.mark.parametrize("kv,scale", [("bf16", None), ("fp8", "none"), ("fp8", "scalar"), ("fp8", "per_token_head")])
def test_prefill_matches_float64_reference(layout, kv, scale):
    kv_dtype = torch.bfloat16 if kv == "bf16" else torch.float8_e4m3fn
    c = make_case(1, batch=2, q_lens=[5, 9], prefix_lens=[130, 300], heads=16, kvh=2, d=128, topk=4, kv_dtype=kv_dtype,
                  scale_mode=scale, layout=layout)  # fmt: skip
    sm = 128**-0.5
    out = run_prefill(c, sm)
    torch.cuda.synchronize()
    assert_close(out, reference(c, *prefill_positions(c), sm), f"prefill layout {layout} {kv} {scale}")


def decode_case(seed, reqs, qlen, layout=4, kv_dtype=torch.bfloat16, scale=None, topk=4):
    seq_lens = [200 + 97 * r for r in range(reqs)]
    prefix = [s - qlen for s in seq_lens]
    return make_case(seed, batch=reqs, q_lens=[qlen] * reqs, prefix_lens=prefix, heads=16, kvh=1, d=128, topk=topk,
                     kv_dtype=kv_dtype, scale_mode=scale, layout=layout)  # fmt: skip


def device_tensors(c):
    """The int tensors on the device, made once (never inside a capture: a host-to-device copy there is illegal)."""
    return dict(
        topk=c["topk_idx"].to(DEV),
        bt=c["block_table"].to(DEV),
        seq=torch.tensor(c["seq_lens"], dtype=torch.int32, device=DEV),
    )


def decode_call(c, qlen, sm, out, dev=None):
    dev = device_tensors(c) if dev is None else dev
    sjt.minimax_m3_sparse_attn_decode(
        c["q"], c["kv"], dev["topk"], dev["bt"], dev["seq"], c["kvh"], sm, out, qlen, c["k_scale"], c["v_scale"]
    )


@pytest.mark.parametrize("layout", [4, 5])
@pytest.mark.parametrize("kv,scale", [("bf16", None), ("fp8", "scalar"), ("fp8", "per_token_head")])
@pytest.mark.parametrize("qlen", [1, 2])
def test_decode_matches_float64_reference(layout, kv, scale, qlen):
    kv_dtype = torch.bfloat16 if kv == "bf16" else torch.float8_e4m3fn
    c = decode_case(2, reqs=3, qlen=qlen, layout=layout, kv_dtype=kv_dtype, scale=scale)
    sm = 128**-0.5
    out = torch.zeros_like(c["q"])
    decode_call(c, qlen, sm, out)
    torch.cuda.synchronize()
    assert_close(out, reference(c, *prefill_positions(c), sm), f"decode layout {layout} {kv} {scale} qlen {qlen}")


def test_matches_vllm_triton_when_available():
    ops = pytest.importorskip("vllm.models.minimax_m3.common.ops.sparse_attn", reason="vLLM (MiniMax-M3 ops) is not installed")
    c = decode_case(3, reqs=4, qlen=1)
    sm = 128**-0.5
    ours, theirs = torch.zeros_like(c["q"]), torch.zeros_like(c["q"])
    decode_call(c, 1, sm, ours)
    ops.minimax_m3_sparse_attn_decode(c["q"], c["kv"], c["topk_idx"].to(DEV), c["block_table"].to(DEV),
                                      torch.tensor(c["seq_lens"], dtype=torch.int32, device=DEV), 1, sm, theirs, 1)  # fmt: skip
    p = make_case(4, batch=2, q_lens=[4, 7], prefix_lens=[0, 260], heads=16, kvh=1, d=128, topk=4, kv_dtype=torch.bfloat16,
                  scale_mode=None, layout=4)  # fmt: skip
    ours_p = run_prefill(p, sm)
    theirs_p = torch.zeros_like(p["q"])
    cu = torch.tensor([0, 4, 11], dtype=torch.int32, device=DEV)
    ops.minimax_m3_sparse_attn(p["q"], p["kv"], p["topk_idx"].to(DEV), p["block_table"].to(DEV), cu,
                               torch.tensor(p["seq_lens"], dtype=torch.int32, device=DEV),
                               torch.tensor(p["prefix_lens"], dtype=torch.int32, device=DEV), 7, 1, sm, theirs_p)  # fmt: skip
    torch.cuda.synchronize()
    assert (ours.float() - theirs.float()).abs().max().item() < 2e-2
    assert (ours_p.float() - theirs_p.float()).abs().max().item() < 2e-2


def test_cuda_graph_capture_and_replay():
    c = decode_case(5, reqs=4, qlen=1)
    sm = 128**-0.5
    out = torch.zeros_like(c["q"])
    dev = device_tensors(c)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        decode_call(c, 1, sm, out, dev)  # warm: builds and loads outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        decode_call(c, 1, sm, out, dev)
    # New inputs in place (same shapes), then replay.
    c2 = decode_case(6, reqs=4, qlen=1)
    c["q"].copy_(c2["q"])
    c["kv"].copy_(c2["kv"])
    dev["topk"].copy_(c2["topk_idx"].to(DEV))
    dev["bt"].copy_(c2["block_table"].to(DEV))
    out.zero_()
    torch.cuda.synchronize()
    graph.replay()
    torch.cuda.synchronize()
    assert_close(out, reference(c2, *prefill_positions(c2), sm), "graph replay")
    # Replay again: same result (nothing host-side changes between replays).
    first = out.clone()
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(first, out)


def test_compile_during_capture_is_refused_with_a_clear_error():
    c = decode_case(7, reqs=2, qlen=1, topk=5)  # topk 5: a kernel nothing warmed
    out = torch.zeros_like(c["q"])
    dev = device_tensors(c)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(sparsejit.GraphCaptureError, match="warm"):
        with torch.cuda.graph(graph):
            decode_call(c, 1, 128**-0.5, out, dev)
    # The process is still healthy: an eager call builds it and works.
    torch.cuda.synchronize()
    decode_call(c, 1, 128**-0.5, out, dev)
    torch.cuda.synchronize()
    assert_close(out, reference(c, *prefill_positions(c), 128**-0.5), "after refused capture")


def test_python_host_overhead_per_call(capsys):
    c = decode_case(8, reqs=8, qlen=1)
    sm = 128**-0.5
    out = torch.zeros_like(c["q"])
    dev = device_tensors(c)
    args = (c["q"], c["kv"], dev["topk"], dev["bt"], dev["seq"], 1, sm, out, 1)
    sjt.minimax_m3_sparse_attn_decode(*args)
    torch.cuda.synchronize()
    per_call = []
    for _ in range(200):
        t0 = time.perf_counter()
        for _ in range(20):
            sjt.minimax_m3_sparse_attn_decode(*args)
        per_call.append((time.perf_counter() - t0) / 20 * 1e6)
        torch.cuda.synchronize()
    med = statistics.median(per_call)
    with capsys.disabled():
        info = sjt.plan_cache_info() if hasattr(sjt, "plan_cache_info") else {}
        print(f"\n[sparsejit] Python host time per call, decode (cached call plan + the C call and its launches): median {med:.2f} us/call; plans {info}")
    assert med < 100, f"{med:.1f} us per call"


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices (the multi-GPU check runs on a two-GPU machine)")
@pytest.mark.parametrize("reqs", [3, 130])  # 130: sm_90's large decode launch (tensor maps encoded per call)
def test_two_devices_each_launch_on_their_own_device(reqs):
    """One process drives two GPUs: each call runs on its tensors' device (one runtime and one set
    of modules per device), also while the other device is torch's current one."""
    sm = 128**-0.5
    for d in (1, 0):
        dev, other = torch.device("cuda", d), 1 - d
        c = decode_case(11 + d, reqs=reqs, qlen=1)
        q, kv = c["q"].to(dev), c["kv"].to(dev)
        topk, bt = c["topk_idx"].to(dev), c["block_table"].to(dev)
        seq = torch.tensor(c["seq_lens"], dtype=torch.int32, device=dev)
        out = torch.full_like(q, float("nan"))
        with torch.cuda.device(other):
            sjt.minimax_m3_sparse_attn_decode(q, kv, topk, bt, seq, c["kvh"], sm, out, 1)
        torch.cuda.synchronize(dev)
        assert_close(out, reference(c, *prefill_positions(c), sm), f"decode on cuda:{d} with cuda:{other} current")
        # prefill on the same device, the other one current
        p = make_case(21 + d, batch=2, q_lens=[5, 9], prefix_lens=[300, 0], heads=16, kvh=1, d=128, topk=4,
                      kv_dtype=torch.bfloat16, scale_mode=None, layout=4)  # fmt: skip
        cu = torch.tensor([0, 5, 14], dtype=torch.int32, device=dev)
        outp = torch.full_like(p["q"], float("nan")).to(dev)
        with torch.cuda.device(other):
            sjt.minimax_m3_sparse_attn(p["q"].to(dev), p["kv"].to(dev), p["topk_idx"].to(dev), p["block_table"].to(dev), cu,
                                       torch.tensor(p["seq_lens"], dtype=torch.int32, device=dev),
                                       torch.tensor(p["prefix_lens"], dtype=torch.int32, device=dev), 9, 1, sm, outp)  # fmt: skip
        torch.cuda.synchronize(dev)
        assert_close(outp, reference(p, *prefill_positions(p), sm), f"prefill on cuda:{d} with cuda:{other} current")


@pytest.mark.parametrize("layout", [4, 5])
def test_ragged_decode_matches_float64_reference(layout):
    """vLLM's ragged decode: query_start_loc / token_to_req_indices, 1-4 queries per request."""
    q_lens, seq_lens = [3, 1, 4, 2], [700, 129, 1500, 64]
    c = make_case(31 + layout, batch=4, q_lens=q_lens, prefix_lens=[s - n for s, n in zip(seq_lens, q_lens)], heads=16, kvh=1, d=128,
                  topk=4, kv_dtype=torch.bfloat16, scale_mode=None, layout=layout)  # fmt: skip
    qsl = torch.tensor([0, 3, 4, 8, 10], dtype=torch.int32, device=DEV)
    t2r = torch.tensor([r for r, n in enumerate(q_lens) for _ in range(n)], dtype=torch.int32, device=DEV)
    dev = device_tensors(c)
    out = torch.full_like(c["q"], float("nan"))
    sm = 128**-0.5
    sjt.minimax_m3_sparse_attn_decode(c["q"], c["kv"], dev["topk"], dev["bt"], dev["seq"], c["kvh"], sm, out, 1,
                                      query_start_loc=qsl, token_to_req_indices=t2r)  # fmt: skip
    torch.cuda.synchronize()
    assert_close(out, reference(c, *prefill_positions(c), sm), f"ragged decode layout {layout}")
