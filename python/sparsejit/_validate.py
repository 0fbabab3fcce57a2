"""Argument checks and packing for the two attention calls, written against the
few tensor methods they need (shape, stride(), dim(), numel(), dtype, device,
data_ptr()), so they run on torch tensors and, in the CPU tests, on small fakes.

Every error names the function and the argument: ValueError for shapes,
devices and values, TypeError for dtypes and Python types.
"""

from __future__ import annotations

from . import _abi

BLOCK = 128  # one selected block == one KV page
FP8 = {"float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz"}
Q_DTYPES = {"bfloat16", "float16"}

# dtype -> name, filled with the real torch dtype objects when torch is present
# (a dict hit on the object is the fast path) and by str() for anything else.
_dtype_names: dict = {}


def dtype_name(dtype) -> str:
    name = _dtype_names.get(dtype)
    if name is None:
        name = str(dtype).rsplit(".", 1)[-1]  # "torch.bfloat16" -> "bfloat16"
        try:
            _dtype_names[dtype] = name
        except TypeError:  # unhashable fake
            pass
    return name


def _err(fn: str, arg: str, what: str) -> str:
    return f"{fn}: argument {arg} {what}"


def _tensor(fn: str, arg: str, t, ndim: int, dtypes, device):
    """Checks type, rank, dtype and device; returns the dtype name."""
    if t is None or not hasattr(t, "data_ptr"):
        raise TypeError(_err(fn, arg, f"must be a tensor, got {type(t).__name__}"))
    if ndim is not None and t.dim() != ndim:
        raise ValueError(_err(fn, arg, f"must be {ndim}-D, got shape {tuple(t.shape)}"))
    name = dtype_name(t.dtype)
    if name not in dtypes:
        raise TypeError(_err(fn, arg, f"must have dtype {' or '.join(sorted(dtypes))}, got {name}"))
    if device is not None and t.device != device:
        raise ValueError(_err(fn, arg, f"must be on {device} (like q), got {t.device}"))
    return name


def _int(fn: str, arg: str, v, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        try:
            import operator

            v = operator.index(v)
        except TypeError:
            raise TypeError(_err(fn, arg, f"must be an int, got {type(v).__name__}")) from None
    if v < minimum:
        raise ValueError(_err(fn, arg, f"must be >= {minimum}, got {v}"))
    return v


def _float(fn: str, arg: str, v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise TypeError(_err(fn, arg, f"must be a float, got {type(v).__name__}")) from None
    if not (f > 0.0 and f < float("inf")):
        raise ValueError(_err(fn, arg, f"must be a positive finite number, got {v}"))
    return f


def _contiguous_1d(fn: str, arg: str, t, length: int):
    if t.shape[0] < length:
        raise ValueError(_err(fn, arg, f"must have at least {length} elements, got shape {tuple(t.shape)}"))
    if t.stride(0) != 1 and t.shape[0] > 1:
        raise ValueError(_err(fn, arg, f"must be contiguous (stride 1): the kernel reads it by index, got stride {t.stride(0)}"))


def check_device(fn: str, q):
    device = getattr(q, "device", None)
    if device is None or getattr(device, "type", None) != "cuda":
        raise ValueError(_err(fn, "q", f"must be a CUDA tensor, got device {device}"))
    return device


def kv_layout(fn: str, kv_cache, num_kv_heads: int, head_dim: int):
    """(kv_stride[4], v_offset, num_pages) for either vLLM layout, from its shape.

    5-D [num_blocks, 2, 128, num_kv_heads, head_dim]: K = [:, 0], V = [:, 1].
    4-D [num_blocks, num_kv_heads, 128, 2*head_dim]: K first half, V second half.
    """
    shape = tuple(kv_cache.shape)
    s = kv_cache.stride()
    if len(shape) == 5:
        if shape[1] != 2 or shape[2] != BLOCK or shape[3] != num_kv_heads or shape[4] != head_dim:
            raise ValueError(
                _err(fn, "kv_cache", f"5-D must be [num_blocks, 2, {BLOCK}, num_kv_heads={num_kv_heads}, head_dim={head_dim}], got {shape}")
            )
        return (s[0], s[3], s[2], s[4]), s[1], shape[0]
    if len(shape) == 4:
        if shape[1] != num_kv_heads or shape[2] != BLOCK or shape[3] != 2 * head_dim:
            raise ValueError(
                _err(fn, "kv_cache", f"4-D must be [num_blocks, num_kv_heads={num_kv_heads}, {BLOCK}, 2*head_dim={2 * head_dim}], got {shape}")
            )
        return (s[0], s[1], s[2], s[3]), head_dim * s[3], shape[0]
    raise ValueError(
        _err(fn, "kv_cache", f"must be [num_blocks, 2, {BLOCK}, num_kv_heads, head_dim] or [num_blocks, num_kv_heads, {BLOCK}, 2*head_dim], got {shape}")
    )


def kv_scales(fn: str, kv_name: str, k_scale, v_scale, num_kv_heads: int, num_pages: int, device):
    """(k_ptr, v_ptr, k_strides, v_strides, scale_mode); scales apply to fp8 KV only (as in vLLM)."""
    if kv_name not in FP8:
        return 0, 0, (0, 0), (0, 0), _abi.SCALE_NONE
    if k_scale is None and v_scale is None:
        return 0, 0, (0, 0), (0, 0), _abi.SCALE_NONE
    if k_scale is None or v_scale is None:
        raise ValueError(_err(fn, "k_scale" if k_scale is None else "v_scale", "must be given with the other scale (both or neither)"))
    for name, t in (("k_scale", k_scale), ("v_scale", v_scale)):
        if not hasattr(t, "data_ptr"):
            raise TypeError(_err(fn, name, f"must be a tensor, got {type(t).__name__}"))
        if dtype_name(t.dtype) != "float32":
            raise TypeError(_err(fn, name, f"must be float32, got {dtype_name(t.dtype)}"))
        if t.device != device:
            raise ValueError(_err(fn, name, f"must be on {device} (like q), got {t.device}"))
    if k_scale.numel() == 1 and v_scale.numel() == 1:
        return k_scale.data_ptr(), v_scale.data_ptr(), (0, 0), (0, 0), _abi.SCALE_SCALAR
    if k_scale.dim() == 2 and v_scale.dim() == 2:
        for name, t in (("k_scale", k_scale), ("v_scale", v_scale)):
            if t.shape[0] != num_kv_heads or t.shape[1] < num_pages * BLOCK:
                raise ValueError(
                    _err(fn, name, f"per-token/head scales must be [num_kv_heads={num_kv_heads}, >= num_blocks*{BLOCK}={num_pages * BLOCK}], got {tuple(t.shape)}")
                )
        if tuple(k_scale.shape) != tuple(v_scale.shape):
            raise ValueError(_err(fn, "v_scale", f"must have k_scale's shape {tuple(k_scale.shape)}, got {tuple(v_scale.shape)}"))
        return k_scale.data_ptr(), v_scale.data_ptr(), tuple(k_scale.stride()), tuple(v_scale.stride()), _abi.SCALE_PER_TOKEN_HEAD
    raise ValueError(
        _err(fn, "k_scale", f"must be a scalar (numel 1) or [num_kv_heads, max_kv_tokens] tensor, got {tuple(k_scale.shape)} and {tuple(v_scale.shape)}")
    )


def common(fn, q, kv_cache, topk_idx, block_table, seq_lens, num_kv_heads, sm_scale, output, k_scale, v_scale):
    """Checks shared by prefill and decode. Returns the packed fields up to (and
    including) k/v scales plus what each call needs to finish its own packing."""
    device = check_device(fn, q)
    q_name = _tensor(fn, "q", q, 3, Q_DTYPES, device)
    total_q, num_heads, head_dim = q.shape
    num_kv_heads = _int(fn, "num_kv_heads", num_kv_heads, 1)
    if num_heads % num_kv_heads:
        raise ValueError(_err(fn, "num_kv_heads", f"must divide q's num_heads={num_heads}, got {num_kv_heads}"))
    sm_scale = _float(fn, "sm_scale", sm_scale)
    _tensor(fn, "output", output, 3, {q_name}, device)
    if tuple(output.shape) != tuple(q.shape):
        raise ValueError(_err(fn, "output", f"must have q's shape {tuple(q.shape)}, got {tuple(output.shape)}"))
    kv_name = _tensor(fn, "kv_cache", kv_cache, None, Q_DTYPES | FP8, device)  # rank: kv_layout
    kv_stride, v_offset, num_pages = kv_layout(fn, kv_cache, num_kv_heads, head_dim)
    _tensor(fn, "topk_idx", topk_idx, 3, {"int32"}, device)
    if topk_idx.shape[0] != num_kv_heads or topk_idx.shape[1] != total_q:
        raise ValueError(
            _err(fn, "topk_idx", f"must be [num_kv_heads={num_kv_heads}, total_q={total_q}, topk], got {tuple(topk_idx.shape)}")
        )
    _tensor(fn, "block_table", block_table, 2, {"int32"}, device)
    if block_table.stride(1) != 1 and block_table.shape[1] > 1:
        raise ValueError(_err(fn, "block_table", f"rows must be contiguous (stride 1 along blocks), got strides {tuple(block_table.stride())}"))
    _tensor(fn, "seq_lens", seq_lens, 1, {"int32"}, device)
    kp, vp, ks, vs, mode = kv_scales(fn, kv_name, k_scale, v_scale, num_kv_heads, num_pages, device)
    return {
        "device": device,
        "total_q": total_q,
        "num_heads": num_heads,
        "head_dim": head_dim,
        "num_kv_heads": num_kv_heads,
        "topk": topk_idx.shape[2],
        "q_code": _abi.DTYPE_CODES[q_name],
        "kv_code": _abi.DTYPE_CODES[kv_name],
        "scale_mode": mode,
        "sm_scale": sm_scale,
        "kv_stride": kv_stride,
        "v_offset": v_offset,
        "num_pages": num_pages,
        "scales": (kp, vp, ks, vs),
    }


def prefill_fields(q, kv_cache, topk_idx, block_table, cu_seqlens_q, seq_lens, prefix_lens, max_query_len, num_kv_heads, sm_scale, output, k_scale, v_scale):
    """Validated fields in sj_prefill_args order (see _abi.PREFILL_FORMAT) and the device."""
    fn = "minimax_m3_sparse_attn"
    c = common(fn, q, kv_cache, topk_idx, block_table, seq_lens, num_kv_heads, sm_scale, output, k_scale, v_scale)
    device = c["device"]
    _tensor(fn, "cu_seqlens_q", cu_seqlens_q, 1, {"int32"}, device)
    batch = cu_seqlens_q.shape[0] - 1
    if batch < 1:
        raise ValueError(_err(fn, "cu_seqlens_q", f"must be [batch + 1] with batch >= 1, got shape {tuple(cu_seqlens_q.shape)}"))
    _contiguous_1d(fn, "cu_seqlens_q", cu_seqlens_q, batch + 1)
    _contiguous_1d(fn, "seq_lens", seq_lens, batch)
    _tensor(fn, "prefix_lens", prefix_lens, 1, {"int32"}, device)
    _contiguous_1d(fn, "prefix_lens", prefix_lens, batch)
    if block_table.shape[0] < batch:
        raise ValueError(_err(fn, "block_table", f"must have >= batch={batch} rows, got shape {tuple(block_table.shape)}"))
    max_query_len = _int(fn, "max_query_len", max_query_len, 0)
    if max_query_len > c["total_q"]:
        raise ValueError(_err(fn, "max_query_len", f"must be <= total_q={c['total_q']}, got {max_query_len}"))
    kp, vp, ks, vs = c["scales"]
    qs, os_, ts, kvs = q.stride(), output.stride(), topk_idx.stride(), c["kv_stride"]
    fields = (
        q.data_ptr(), qs[0], qs[1], qs[2],
        kv_cache.data_ptr(), kvs[0], kvs[1], kvs[2], kvs[3], c["v_offset"], c["num_pages"],
        topk_idx.data_ptr(), ts[0], ts[1], ts[2],
        block_table.data_ptr(), block_table.stride(0), block_table.shape[1],
        cu_seqlens_q.data_ptr(), seq_lens.data_ptr(), prefix_lens.data_ptr(),
        kp, vp, ks[0], ks[1], vs[0], vs[1],
        output.data_ptr(), os_[0], os_[1], os_[2],
        c["total_q"], c["num_heads"], c["num_kv_heads"], c["head_dim"], c["topk"], batch, max_query_len,
        c["q_code"], c["kv_code"], c["scale_mode"], c["sm_scale"],
    )  # fmt: skip
    return fields, c


def decode_fields(q, kv_cache, topk_idx, block_table, seq_lens, num_kv_heads, sm_scale, output, decode_query_len, k_scale, v_scale,
                  query_start_loc=None, token_to_req_indices=None):
    """Validated fields in sj_decode_args order, without the workspace and the ragged
    pointers (appended by the caller: ``ragged_pointers``)."""
    fn = "minimax_m3_sparse_attn_decode"
    c = common(fn, q, kv_cache, topk_idx, block_table, seq_lens, num_kv_heads, sm_scale, output, k_scale, v_scale)
    decode_query_len = _int(fn, "decode_query_len", decode_query_len, 1)
    num_reqs = seq_lens.shape[0]
    if (query_start_loc is None) != (token_to_req_indices is None):
        missing = "token_to_req_indices" if token_to_req_indices is None else "query_start_loc"
        raise ValueError(_err(fn, missing, "must be given with the other ragged-decode argument (query_start_loc and token_to_req_indices go together)"))
    if query_start_loc is not None:
        # Ragged: query j of request r is row query_start_loc[r] + j, at seq_lens[r] - n_r + j.
        _tensor(fn, "query_start_loc", query_start_loc, 1, {"int32"}, c["device"])
        _tensor(fn, "token_to_req_indices", token_to_req_indices, 1, {"int32"}, c["device"])
        if query_start_loc.shape[0] != num_reqs + 1:
            raise ValueError(_err(fn, "query_start_loc", f"must be [len(seq_lens) + 1] = [{num_reqs + 1}], got shape {tuple(query_start_loc.shape)}"))
        _contiguous_1d(fn, "query_start_loc", query_start_loc, num_reqs + 1)
        if token_to_req_indices.shape[0] != c["total_q"]:
            raise ValueError(_err(fn, "token_to_req_indices", f"must be [total_q] = [{c['total_q']}] (q's rows), got shape {tuple(token_to_req_indices.shape)}"))
        _contiguous_1d(fn, "token_to_req_indices", token_to_req_indices, c["total_q"])
    elif c["total_q"] != num_reqs * decode_query_len:
        raise ValueError(
            _err(fn, "q", f"must have total_q = len(seq_lens) * decode_query_len = {num_reqs} * {decode_query_len} rows, got {c['total_q']}")
        )
    _contiguous_1d(fn, "seq_lens", seq_lens, num_reqs)
    if block_table.shape[0] < num_reqs:
        raise ValueError(_err(fn, "block_table", f"must have >= num_reqs={num_reqs} rows, got shape {tuple(block_table.shape)}"))
    kp, vp, ks, vs = c["scales"]
    qs, os_, ts, kvs = q.stride(), output.stride(), topk_idx.stride(), c["kv_stride"]
    fields = (
        q.data_ptr(), qs[0], qs[1], qs[2],
        kv_cache.data_ptr(), kvs[0], kvs[1], kvs[2], kvs[3], c["v_offset"], c["num_pages"],
        topk_idx.data_ptr(), ts[0], ts[1], ts[2],
        block_table.data_ptr(), block_table.stride(0), block_table.shape[1],
        seq_lens.data_ptr(),
        kp, vp, ks[0], ks[1], vs[0], vs[1],
        output.data_ptr(), os_[0], os_[1], os_[2],
        c["total_q"], c["num_heads"], c["num_kv_heads"], c["head_dim"], c["topk"], num_reqs, decode_query_len,
        c["q_code"], c["kv_code"], c["scale_mode"], c["sm_scale"],
    )  # fmt: skip
    return fields, c
