"""CPU tests: import without torch or a GPU, argument validation messages,
library loading and its errors. (GPU tests: test_gpu.py.)"""

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sparsejit
import sparsejit.torch as sjt
from sparsejit import _abi, _validate
from fakes import CUDA0, FakeDevice, FakeTensor, decode_inputs, prefill_inputs

PKG_ROOT = Path(__file__).resolve().parents[1]


def library_available():
    try:
        sparsejit.load_library()
        return True
    except sparsejit.LibraryNotFoundError:
        return False


needs_library = pytest.mark.skipif(not library_available(), reason="libsparsejit.so not built (set SPARSEJIT_LIBRARY)")


def test_imports_without_torch_or_gpu():
    code = "import sys; sys.modules['torch'] = None\nimport sparsejit, sparsejit.torch\nprint('ok')"
    r = subprocess.run([sys.executable, "-c", code], cwd=PKG_ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_signatures_match_vllm():
    p = list(inspect.signature(sjt.minimax_m3_sparse_attn).parameters)
    assert p == ["q", "kv_cache", "topk_idx", "block_table", "cu_seqlens_q", "seq_lens", "prefix_lens", "max_query_len",
                 "num_kv_heads", "sm_scale", "output", "k_scale", "v_scale"]  # fmt: skip
    d = list(inspect.signature(sjt.minimax_m3_sparse_attn_decode).parameters)
    assert d[:11] == ["q", "kv_cache", "topk_idx", "block_table", "seq_lens", "num_kv_heads", "sm_scale", "output",
                      "decode_query_len", "k_scale", "v_scale"]  # fmt: skip


def test_struct_formats_match_the_c_header():
    assert _abi.PREFILL_FORMAT.size == 320
    assert _abi.DECODE_FORMAT.size == 320
    assert _abi.SHAPE_FORMAT.size == 48


@pytest.mark.parametrize("layout", [4, 5])
def test_valid_arguments_pack_in_c_order(layout):
    a = prefill_inputs(layout=layout)
    fields, c = _validate.prefill_fields(**a, k_scale=None, v_scale=None)
    _abi.PREFILL_FORMAT.pack(*fields)  # the right count and types
    assert fields[0] == a["q"].data_ptr()
    d = 128
    if layout == 4:  # [pages, kvh, 128, 2d]: V is the second half of the last dim
        assert fields[5:11] == (1 * 128 * 2 * d, 128 * 2 * d, 2 * d, 1, d, 8)
    else:  # [pages, 2, 128, kvh, d]: V is [:, 1]
        assert fields[5:11] == (2 * 128 * 1 * d, d, 1 * d, 1, 128 * 1 * d, 8)
    assert c["topk"] == 4 and c["scale_mode"] == _abi.SCALE_NONE
    dfields, _ = _validate.decode_fields(**decode_inputs(layout=layout), k_scale=None, v_scale=None)
    _abi.DECODE_FORMAT.pack(*dfields, 0, 0)


def expect(exc, match, fn, **kw):
    with pytest.raises(exc, match=match):
        fn(**kw)


def prefill(**kw):
    kw.setdefault("k_scale", None)
    kw.setdefault("v_scale", None)
    return sjt.minimax_m3_sparse_attn(**kw)


def decode(**kw):
    kw.setdefault("k_scale", None)
    kw.setdefault("v_scale", None)
    return sjt.minimax_m3_sparse_attn_decode(**kw)


def test_validation_names_the_argument():
    a = prefill_inputs()
    expect(ValueError, r"argument q must be a CUDA tensor", prefill, **{**a, "q": FakeTensor((6, 16, 128), "bfloat16", FakeDevice("cpu", None))})
    expect(TypeError, r"argument q must have dtype bfloat16 or float16, got float32", prefill, **{**a, "q": FakeTensor((6, 16, 128), "float32")})
    expect(ValueError, r"argument q must be 3-D", prefill, **{**a, "q": FakeTensor((6, 2048), "bfloat16")})
    expect(TypeError, r"argument output must have dtype bfloat16", prefill, **{**a, "output": FakeTensor((6, 16, 128), "float16")})
    expect(ValueError, r"argument output must have q's shape", prefill, **{**a, "output": FakeTensor((5, 16, 128), "bfloat16")})
    expect(ValueError, r"argument kv_cache must be on cuda:0", prefill, **{**a, "kv_cache": FakeTensor((8, 1, 128, 256), "bfloat16", FakeDevice("cuda", 1))})
    expect(ValueError, r"argument kv_cache 4-D must be \[num_blocks, num_kv_heads=1, 128", prefill, **{**a, "kv_cache": FakeTensor((8, 1, 64, 256), "bfloat16")})
    expect(ValueError, r"argument kv_cache must be \[num_blocks, 2, 128", prefill, **{**a, "kv_cache": FakeTensor((8, 128, 256), "bfloat16")})
    expect(TypeError, r"argument topk_idx must have dtype int32, got int64", prefill, **{**a, "topk_idx": FakeTensor((1, 6, 4), "int64")})
    expect(ValueError, r"argument topk_idx must be \[num_kv_heads=1, total_q=6, topk\]", prefill, **{**a, "topk_idx": FakeTensor((1, 7, 4), "int32")})
    expect(ValueError, r"argument block_table rows must be contiguous", prefill, **{**a, "block_table": FakeTensor((2, 4), "int32", strides=(1, 2))})
    expect(ValueError, r"argument seq_lens must be contiguous", prefill, **{**a, "seq_lens": FakeTensor((2,), "int32", strides=(2,))})
    expect(ValueError, r"argument cu_seqlens_q must be \[batch \+ 1\]", prefill, **{**a, "cu_seqlens_q": FakeTensor((1,), "int32")})
    expect(ValueError, r"argument max_query_len must be <= total_q=6", prefill, **{**a, "max_query_len": 7})
    expect(TypeError, r"argument max_query_len must be an int", prefill, **{**a, "max_query_len": "3"})
    expect(ValueError, r"argument num_kv_heads must divide q's num_heads=16", prefill, **{**a, "num_kv_heads": 3})
    expect(ValueError, r"argument sm_scale must be a positive finite number", prefill, **{**a, "sm_scale": float("nan")})
    expect(TypeError, r"argument cu_seqlens_q must be a tensor, got NoneType", prefill, **{**a, "cu_seqlens_q": None})


def test_decode_validation_names_the_argument():
    a = decode_inputs(reqs=4, qlen=2)
    expect(ValueError, r"total_q = len\(seq_lens\) \* decode_query_len = 4 \* 3", decode, **{**a, "decode_query_len": 3})
    expect(ValueError, r"argument decode_query_len must be >= 1", decode, **{**a, "decode_query_len": 0})
    expect(ValueError, r"argument block_table must have >= num_reqs=4 rows", decode, **{**a, "block_table": FakeTensor((3, 4), "int32")})
    with pytest.raises(NotImplementedError, match="ragged"):
        sjt.minimax_m3_sparse_attn_decode(**a, query_start_loc=FakeTensor((5,), "int32"), token_to_req_indices=FakeTensor((8,), "int32"))


def test_fp8_scales_follow_vllm():
    kw = decode_inputs(kv_dtype="float8_e4m3fn", pages=8)
    # scalar: numel() == 1, any rank
    _, c = _validate.decode_fields(**kw, k_scale=FakeTensor((), "float32"), v_scale=FakeTensor((1,), "float32"))
    assert c["scale_mode"] == _abi.SCALE_SCALAR
    # per (kv_head, token): 2-D [num_kv_heads, tokens]
    ks, vs = FakeTensor((1, 8 * 128), "float32"), FakeTensor((1, 8 * 128), "float32")
    fields, c = _validate.decode_fields(**kw, k_scale=ks, v_scale=vs)
    assert c["scale_mode"] == _abi.SCALE_PER_TOKEN_HEAD
    assert fields[19:25] == (ks.data_ptr(), vs.data_ptr(), 1024, 1, 1024, 1)
    expect(ValueError, r"argument v_scale must be given with the other scale", decode, **kw, k_scale=FakeTensor((1,), "float32"))
    expect(TypeError, r"argument k_scale must be float32, got bfloat16", decode, **kw, k_scale=FakeTensor((1,), "bfloat16"), v_scale=FakeTensor((1,), "float32"))
    expect(ValueError, r"argument k_scale per-token/head scales must be \[num_kv_heads=1, >= num_blocks\*128=1024\]", decode,
           **kw, k_scale=FakeTensor((1, 100), "float32"), v_scale=FakeTensor((1, 100), "float32"))  # fmt: skip
    # Not fp8: scales are ignored, as in vLLM.
    _, c = _validate.decode_fields(**decode_inputs(), k_scale=FakeTensor((1,), "float32"), v_scale=None)
    assert c["scale_mode"] == _abi.SCALE_NONE


def test_missing_library_error_lists_where_it_looked(tmp_path):
    code = "import sparsejit\ntry:\n    sparsejit.load_library()\nexcept sparsejit.LibraryNotFoundError as e:\n    print(e)\n"
    env = {**os.environ, "SPARSEJIT_LIBRARY": str(tmp_path / "nope.so")}
    r = subprocess.run([sys.executable, "-c", code], cwd=PKG_ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "libsparsejit.so not found" in r.stdout and "nope.so" in r.stdout and "SPARSEJIT_LIBRARY" in r.stdout
    bad = tmp_path / "libsparsejit.so"
    bad.write_text("not a library")
    env["SPARSEJIT_LIBRARY"] = str(bad)
    r = subprocess.run([sys.executable, "-c", code], cwd=PKG_ROOT, env=env, capture_output=True, text=True)
    assert "cannot load" in r.stdout and str(bad) in r.stdout


@needs_library
def test_library_loads_and_reports_no_gpu_clearly():
    lib = sparsejit.load_library()
    assert lib.abi_version() == _abi.ABI_VERSION
    status = sparsejit.cache_status()
    assert "mode" in status and "user_dir" in status
    try:
        sparsejit.runtime_for_device(0)
    except sparsejit.NoDeviceError as e:
        assert "no GPU" in str(e) and "SJ_ERROR_NO_DEVICE" in str(e)
    else:
        pytest.skip("a GPU is present: the no-GPU message is not observable here")


@needs_library
def test_valid_call_without_gpu_raises_no_device_not_a_crash():
    try:
        sparsejit.runtime_for_device(0)
        pytest.skip("a GPU is present")
    except sparsejit.NoDeviceError:
        pass
    with pytest.raises(sparsejit.NoDeviceError, match="no GPU"):
        prefill(**prefill_inputs())
