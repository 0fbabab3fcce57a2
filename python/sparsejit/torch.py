"""Drop-ins for vLLM's MiniMax-M3 sparse attention (vllm/models/minimax_m3/common/ops/sparse_attn.py):
same argument lists, same semantics, results written into ``output``, launched
on torch's current stream. Both vLLM KV layouts are accepted (told apart by rank).

Imports without torch (``import sparsejit.torch`` works on a CPU-only machine);
torch is needed only to launch: for the current stream and for decode's
split-K workspace, which comes from torch's caching allocator, so nothing is
allocated behind torch's back and a CUDA graph capture stays valid.

A call's checks run once per shape: later calls with the same metadata reuse
its plan (_plan.py) and only write their data pointers, so the Python cost per
call is a dict lookup, one guard check of the tensors and a few stores.
"""

from __future__ import annotations

import ctypes

from . import _abi, _plan, _validate
from ._runtime import runtime_for_device

try:  # the package must import without torch: it is only needed to launch
    import torch as _torch
except ImportError:  # pragma: no cover - exercised on machines without torch
    _torch = None

if _torch is not None:
    for _name in ("bfloat16", "float16", "float32", "int32", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"):
        if hasattr(_torch, _name):
            _validate._dtype_names[getattr(_torch, _name)] = _name

__all__ = ["clear_plans", "minimax_m3_sparse_attn", "minimax_m3_sparse_attn_decode", "plan_cache_info"]


def _need_torch():
    if _torch is None:
        raise ImportError("sparsejit.torch: launching needs PyTorch with CUDA (import torch failed)")
    return _torch


def _device_index(device) -> int:
    index = device.index
    return _need_torch().cuda.current_device() if index is None else index


def _torch_raw_stream():
    """torch's current stream of a device as an int, by the cheapest way this torch has."""
    raw = getattr(_torch._C, "_cuda_getCurrentRawStream", None)  # no Stream object
    if raw is not None:
        return raw
    return lambda index: _torch.cuda.current_stream(index).cuda_stream


def _no_torch_stream(index: int) -> int:
    _need_torch()


_raw_stream = _no_torch_stream if _torch is None else _torch_raw_stream()


def _alloc_workspace(nbytes: int, device):
    # From torch's caching allocator (its graph pool while capturing): no cudaMalloc in a capture.
    return _need_torch().empty(nbytes, dtype=_torch.uint8, device=device)


_prefill_plans = _plan.PlanCache()
_decode_plans = _plan.PlanCache()
_PREFILL = _prefill_plans.plans  # read without a lock on the hot path
_DECODE = _decode_plans.plans
_UNRESOLVED = object()
_torch_guard = _UNRESOLVED  # torch's C++ tensor guard, or None; resolved at the first plan


def clear_plans() -> None:
    """Drops every cached call plan (they are rebuilt, checks included, on the next calls)."""
    _prefill_plans.clear()
    _decode_plans.clear()


def plan_cache_info() -> dict:
    """The call-plan caches: plans held, their bound, full checks run, and which guard checks the tensors."""
    guard = "unresolved" if _torch_guard is _UNRESOLVED else ("torch TensorGuards" if _torch_guard else "Python metadata")
    return {
        **{name: {"plans": c.count, "maxsize": c.maxsize, "builds": c.builds} for name, c in (("prefill", _prefill_plans), ("decode", _decode_plans))},
        "tensor_guard": guard,
    }


def _guard(tensors):
    """check(*tensors) accepting exactly these tensors' metadata, or None when they cannot be guarded (the call is then not cached)."""
    global _torch_guard
    if _torch_guard is _UNRESOLVED:
        _torch_guard = None if _torch is None else _plan.torch_tensor_guard(_torch)
    try:
        if _torch_guard is not None and all(isinstance(t, _torch.Tensor) for t in tensors):
            check = _torch_guard(*tensors).check
        else:
            check = _plan.MetadataGuard(*tensors).check
        return check if check(*tensors) is True else None  # e.g. one tensor passed twice: never accepted
    except (AttributeError, TypeError):  # None or another non-tensor among them
        return None


def _plan_check(key, device, length, num_kv_heads, sm_scale, tensors, k_scale, v_scale):
    """The guard a cached plan checks its tensors with, or None when this call is not to be cached."""
    if key is None or not _plan.cacheable(device, length, num_kv_heads, sm_scale):
        return None
    return _guard(tensors if k_scale is None and v_scale is None else (*tensors, k_scale, v_scale))


def _build_prefill(key, q, kv_cache, topk_idx, block_table, cu_seqlens_q, seq_lens, prefix_lens, max_query_len, num_kv_heads, sm_scale, output, k_scale, v_scale):
    """The full checks (raising for invalid input), then a plan, cached under ``key`` when it allows (None: never)."""
    _prefill_plans.builds += 1
    fields, c = _validate.prefill_fields(
        q, kv_cache, topk_idx, block_table, cu_seqlens_q, seq_lens, prefix_lens, max_query_len, num_kv_heads, sm_scale, output, k_scale, v_scale
    )
    tensors = (q, kv_cache, topk_idx, block_table, cu_seqlens_q, seq_lens, prefix_lens, output)
    check = _plan_check(key, c["device"], max_query_len, num_kv_heads, sm_scale, tensors, k_scale, v_scale)
    if c["total_q"] == 0 or fields[_MAX_QUERY_LEN] == 0:  # nothing to do (max_query_len 0)
        plan = _plan.Plan(check=check, empty=True)
    else:
        index = _device_index(c["device"])
        plan = _plan.prefill_plan(check, fields, c, runtime_for_device(index), index)
    if check is not None:
        _prefill_plans.add(key, plan)
    return plan


def _decode_runtime(c):
    """The device index, its runtime and the workspace bytes a decode of these shapes needs."""
    index = _device_index(c["device"])
    rt = runtime_for_device(index)
    return index, rt, rt.decode_workspace_bytes(c["total_q"], c["num_heads"], c["num_kv_heads"], c["head_dim"], c["topk"])


def _build_decode(key, q, kv_cache, topk_idx, block_table, seq_lens, num_kv_heads, sm_scale, output, decode_query_len, k_scale, v_scale):
    """The full checks (raising for invalid input), then a plan, cached under ``key`` when it allows (None: never)."""
    _decode_plans.builds += 1
    fields, c = _validate.decode_fields(
        q, kv_cache, topk_idx, block_table, seq_lens, num_kv_heads, sm_scale, output, decode_query_len, k_scale, v_scale
    )
    tensors = (q, kv_cache, topk_idx, block_table, seq_lens, output)
    check = _plan_check(key, c["device"], decode_query_len, num_kv_heads, sm_scale, tensors, k_scale, v_scale)
    if c["total_q"] == 0:
        plan = _plan.Plan(check=check, empty=True)
    else:
        index, rt, nbytes = _decode_runtime(c)
        plan = _plan.decode_plan(check, fields, c, rt, index, nbytes)
    if check is not None:
        _decode_plans.add(key, plan)
    return plan


def _ragged_decode(q, kv_cache, topk_idx, block_table, seq_lens, num_kv_heads, sm_scale, output, decode_query_len, k_scale, v_scale,
                   query_start_loc, token_to_req_indices):
    """Ragged decode: the full checks, then one packed call (never cached)."""
    fields, c = _validate.decode_fields(q, kv_cache, topk_idx, block_table, seq_lens, num_kv_heads, sm_scale, output, decode_query_len,
                                        k_scale, v_scale, query_start_loc, token_to_req_indices)  # fmt: skip
    if c["total_q"] == 0:
        return
    index, rt, nbytes = _decode_runtime(c)
    workspace = _alloc_workspace(nbytes, c["device"]) if nbytes else None
    buf = ctypes.create_string_buffer(_abi.DECODE_FORMAT.size)
    _abi.DECODE_FORMAT.pack_into(buf, 0, *fields, workspace.data_ptr() if workspace is not None else 0, nbytes,
                                 query_start_loc.data_ptr(), token_to_req_indices.data_ptr())  # fmt: skip
    st = rt.lib.decode(rt.handle, ctypes.addressof(buf), _raw_stream(index))
    if st:
        rt.lib.raise_for(st, "minimax_m3_sparse_attn_decode")


_MAX_QUERY_LEN = _abi.PREFILL_FIELDS.index("max_query_len")
_slots = _plan.slots
P_Q, P_KV, P_TOPK, P_BLOCK_TABLE, P_CU_SEQLENS, P_SEQ_LENS, P_PREFIX_LENS, P_K_SCALE, P_V_SCALE, P_OUTPUT = (
    _plan.P_Q, _plan.P_KV, _plan.P_TOPK, _plan.P_BLOCK_TABLE, _plan.P_CU_SEQLENS, _plan.P_SEQ_LENS,
    _plan.P_PREFIX_LENS, _plan.P_K_SCALE, _plan.P_V_SCALE, _plan.P_OUTPUT,
)  # fmt: skip
D_Q, D_KV, D_TOPK, D_BLOCK_TABLE, D_SEQ_LENS, D_K_SCALE, D_V_SCALE, D_OUTPUT, D_WORKSPACE = (
    _plan.D_Q, _plan.D_KV, _plan.D_TOPK, _plan.D_BLOCK_TABLE, _plan.D_SEQ_LENS,
    _plan.D_K_SCALE, _plan.D_V_SCALE, _plan.D_OUTPUT, _plan.D_WORKSPACE,
)  # fmt: skip


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
    try:  # _plan.prefill_key, inline
        key = (q.shape, type(num_kv_heads), num_kv_heads, type(sm_scale), sm_scale, type(max_query_len), max_query_len,
               k_scale is None, v_scale is None)  # fmt: skip
        bucket = _PREFILL[key]
    except KeyError:  # a new shape
        bucket = ()
    except (AttributeError, TypeError):  # q is not a tensor, or a scalar is unhashable: checked, never cached
        key, bucket = None, ()
    if k_scale is None and v_scale is None:
        for plan in bucket:
            if plan.check(q, kv_cache, topk_idx, block_table, cu_seqlens_q, seq_lens, prefix_lens, output):
                break
        else:
            plan = _build_prefill(
                key, q, kv_cache, topk_idx, block_table, cu_seqlens_q, seq_lens, prefix_lens, max_query_len, num_kv_heads, sm_scale, output, None, None
            )
    else:
        for plan in bucket:
            if plan.check(q, kv_cache, topk_idx, block_table, cu_seqlens_q, seq_lens, prefix_lens, output, k_scale, v_scale):
                break
        else:
            plan = _build_prefill(
                key, q, kv_cache, topk_idx, block_table, cu_seqlens_q, seq_lens, prefix_lens, max_query_len, num_kv_heads, sm_scale, output, k_scale, v_scale
            )
    if plan.empty:
        return
    slot = _slots.prefill
    if slot.plan is not plan:
        slot.bytes[:] = plan.template
        slot.plan = plan
    w = slot.words
    try:
        w[P_Q] = q.data_ptr()
        w[P_KV] = kv_cache.data_ptr()
        w[P_TOPK] = topk_idx.data_ptr()
        w[P_BLOCK_TABLE] = block_table.data_ptr()
        w[P_CU_SEQLENS] = cu_seqlens_q.data_ptr()
        w[P_SEQ_LENS] = seq_lens.data_ptr()
        w[P_PREFIX_LENS] = prefix_lens.data_ptr()
        w[P_OUTPUT] = output.data_ptr()
        if plan.scaled:
            w[P_K_SCALE] = k_scale.data_ptr()
            w[P_V_SCALE] = v_scale.data_ptr()
    except AttributeError:  # shaped like a tensor but not one: raise what the checks raise
        _validate.prefill_fields(
            q, kv_cache, topk_idx, block_table, cu_seqlens_q, seq_lens, prefix_lens, max_query_len, num_kv_heads, sm_scale, output, k_scale, v_scale
        )
        raise
    rt = plan.runtime
    st = rt.lib.prefill(rt.handle, slot.address, _raw_stream(plan.device_index))
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
    """GQA block-sparse attention for decode batches (split-K + merge, or one pass).

    Uniform: every request has ``decode_query_len`` query rows. Ragged (vLLM's
    ``query_start_loc`` [num_reqs + 1] and ``token_to_req_indices`` [total_q], int32,
    given together): query j of request r is row query_start_loc[r] + j at position
    seq_lens[r] - n_r + j; ``decode_query_len`` is then unused. Ragged calls are
    checked in full on every call (no cached plan).
    """
    if query_start_loc is not None or token_to_req_indices is not None:
        _ragged_decode(q, kv_cache, topk_idx, block_table, seq_lens, num_kv_heads, sm_scale, output, decode_query_len, k_scale, v_scale,
                       query_start_loc, token_to_req_indices)  # fmt: skip
        return
    try:  # _plan.decode_key, inline
        key = (q.shape, type(num_kv_heads), num_kv_heads, type(sm_scale), sm_scale, type(decode_query_len), decode_query_len,
               k_scale is None, v_scale is None)  # fmt: skip
        bucket = _DECODE[key]
    except KeyError:  # a new shape
        bucket = ()
    except (AttributeError, TypeError):  # q is not a tensor, or a scalar is unhashable: checked, never cached
        key, bucket = None, ()
    if k_scale is None and v_scale is None:
        for plan in bucket:
            if plan.check(q, kv_cache, topk_idx, block_table, seq_lens, output):
                break
        else:
            plan = _build_decode(key, q, kv_cache, topk_idx, block_table, seq_lens, num_kv_heads, sm_scale, output, decode_query_len, None, None)
    else:
        for plan in bucket:
            if plan.check(q, kv_cache, topk_idx, block_table, seq_lens, output, k_scale, v_scale):
                break
        else:
            plan = _build_decode(key, q, kv_cache, topk_idx, block_table, seq_lens, num_kv_heads, sm_scale, output, decode_query_len, k_scale, v_scale)
    if plan.empty:
        return
    # Allocated before the struct is written: nothing else runs on this thread between the stores and the call.
    workspace = _alloc_workspace(plan.workspace_bytes, plan.device) if plan.workspace_bytes else None
    slot = _slots.decode
    if slot.plan is not plan:
        slot.bytes[:] = plan.template
        slot.plan = plan
    w = slot.words
    try:
        w[D_Q] = q.data_ptr()
        w[D_KV] = kv_cache.data_ptr()
        w[D_TOPK] = topk_idx.data_ptr()
        w[D_BLOCK_TABLE] = block_table.data_ptr()
        w[D_SEQ_LENS] = seq_lens.data_ptr()
        w[D_OUTPUT] = output.data_ptr()
        if plan.scaled:
            w[D_K_SCALE] = k_scale.data_ptr()
            w[D_V_SCALE] = v_scale.data_ptr()
    except AttributeError:  # shaped like a tensor but not one: raise what the checks raise
        _validate.decode_fields(q, kv_cache, topk_idx, block_table, seq_lens, num_kv_heads, sm_scale, output, decode_query_len, k_scale, v_scale)
        raise
    if workspace is not None:
        w[D_WORKSPACE] = workspace.data_ptr()
    rt = plan.runtime
    st = rt.lib.decode(rt.handle, slot.address, _raw_stream(plan.device_index))
    if st:
        rt.lib.raise_for(st, "minimax_m3_sparse_attn_decode")
    # `workspace` returns to the caching allocator here; torch orders its reuse after this stream's work.
