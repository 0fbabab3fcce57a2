"""Drop-ins for vLLM's MiniMax-M3 sparse attention (vllm/models/minimax_m3/common/ops/sparse_attn.py):
same argument lists, same semantics, results written into ``output``, launched
on torch's current stream. Both vLLM KV layouts are accepted (told apart by rank).

Imports without torch (``import sparsejit.torch`` works on a CPU-only machine);
torch is needed only to launch: for the current stream and for decode's
split-K workspace, which comes from torch's caching allocator, so nothing is
allocated behind torch's back and a CUDA graph capture stays valid.
"""

from __future__ import annotations

from . import _abi, _validate
from ._runtime import runtime_for_device

try:  # the package must import without torch: it is only needed to launch
    import torch as _torch
except ImportError:  # pragma: no cover - exercised on machines without torch
    _torch = None

if _torch is not None:
    for _name in ("bfloat16", "float16", "float32", "int32", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"):
        if hasattr(_torch, _name):
            _validate._dtype_names[getattr(_torch, _name)] = _name

__all__ = ["minimax_m3_sparse_attn", "minimax_m3_sparse_attn_decode"]


def _need_torch():
    if _torch is None:
        raise ImportError("sparsejit.torch: launching needs PyTorch with CUDA (import torch failed)")
    return _torch


def _device_index(device) -> int:
    index = device.index
    return _need_torch().cuda.current_device() if index is None else index


def _raw_stream(index: int) -> int:
    torch = _need_torch()
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)  # cheapest: no Stream object
    if raw is not None:
        return raw(index)
    return torch.cuda.current_stream(index).cuda_stream


def minimax_m3_sparse_attn(
    q,
    kv_cache,
    topk_idx,
    block_table,
    cu_seqlens_q,
    seq_lens,
    prefix_lens,
    max_query_len,
    num_kv_heads,
    sm_scale,
    output,
    k_scale=None,
    v_scale=None,
) -> None:
    """GQA block-sparse attention over the selected blocks (prefill; block_size_q == 1)."""
    fields, c = _validate.prefill_fields(
        q, kv_cache, topk_idx, block_table, cu_seqlens_q, seq_lens, prefix_lens, max_query_len, num_kv_heads, sm_scale, output, k_scale, v_scale
    )
    if c["total_q"] == 0 or fields[-5] == 0:  # nothing to do (max_query_len 0)
        return
    index = _device_index(c["device"])
    rt = runtime_for_device(index)
    buf = _abi.args_buffer
    _abi.PREFILL_FORMAT.pack_into(buf.prefill, 0, *fields)
    st = rt.lib.prefill(rt.handle, buf.prefill_addr, _raw_stream(index))
    if st:
        rt.lib.raise_for(st, "minimax_m3_sparse_attn")


def minimax_m3_sparse_attn_decode(
    q,
    kv_cache,
    topk_idx,
    block_table,
    seq_lens,
    num_kv_heads,
    sm_scale,
    output,
    decode_query_len,
    k_scale=None,
    v_scale=None,
    query_start_loc=None,
    token_to_req_indices=None,
) -> None:
    """GQA block-sparse attention for uniform decode batches (split-K + merge).

    ``query_start_loc`` / ``token_to_req_indices`` (vLLM's ragged decode) are
    accepted for signature compatibility and must be None: ragged batches are
    not supported yet.
    """
    if query_start_loc is not None or token_to_req_indices is not None:
        raise NotImplementedError("minimax_m3_sparse_attn_decode: ragged decode (query_start_loc/token_to_req_indices) is not supported")
    fields, c = _validate.decode_fields(
        q, kv_cache, topk_idx, block_table, seq_lens, num_kv_heads, sm_scale, output, decode_query_len, k_scale, v_scale
    )
    if c["total_q"] == 0:
        return
    index = _device_index(c["device"])
    rt = runtime_for_device(index)
    nbytes = rt.decode_workspace_bytes(c["total_q"], c["num_heads"], c["num_kv_heads"], c["head_dim"], c["topk"])
    # From torch's caching allocator (its graph pool while capturing): no cudaMalloc in a capture.
    workspace = _need_torch().empty((nbytes,), dtype=_torch.uint8, device=c["device"])
    buf = _abi.args_buffer
    _abi.DECODE_FORMAT.pack_into(buf.decode, 0, *fields, workspace.data_ptr(), nbytes)
    st = rt.lib.decode(rt.handle, buf.decode_addr, _raw_stream(index))
    if st:
        rt.lib.raise_for(st, "minimax_m3_sparse_attn_decode")
    # `workspace` returns to the caching allocator here; torch orders its reuse after this stream's work.
