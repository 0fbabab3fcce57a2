"""CPU tests: import without torch or a GPU, argument validation messages,
library loading and its errors, and the call plans (checks once per shape) on
fake runtimes. (GPU tests: test_gpu.py.)"""

import ctypes
import inspect
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import sparsejit
import sparsejit.torch as sjt
from sparsejit import _abi, _plan, _validate
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
    assert _abi.DECODE_FORMAT.size == 336  # + query_start_loc, token_to_req_indices
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
    _abi.DECODE_FORMAT.pack(*dfields, 0, 0, 0, 0)


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
    # Ragged decode: the two arrays together, int32, [num_reqs + 1] and [total_q]; decode_query_len is then unused.
    qsl, t2r = FakeTensor((5,), "int32"), FakeTensor((8,), "int32")
    expect(ValueError, r"argument token_to_req_indices must be given with the other", decode, **a, query_start_loc=qsl)
    expect(ValueError, r"argument query_start_loc must be given with the other", decode, **a, token_to_req_indices=t2r)
    expect(TypeError, r"argument query_start_loc must have dtype int32, got int64", decode, **a, query_start_loc=FakeTensor((5,), "int64"), token_to_req_indices=t2r)
    expect(ValueError, r"argument query_start_loc must be \[len\(seq_lens\) \+ 1\] = \[5\]", decode, **a, query_start_loc=FakeTensor((4,), "int32"), token_to_req_indices=t2r)
    expect(ValueError, r"argument token_to_req_indices must be \[total_q\] = \[8\]", decode, **a, query_start_loc=qsl, token_to_req_indices=FakeTensor((7,), "int32"))
    expect(ValueError, r"argument query_start_loc must be contiguous", decode, **a, query_start_loc=FakeTensor((5,), "int32", strides=(2,)), token_to_req_indices=t2r)
    fields, c = _validate.decode_fields(**{**a, "decode_query_len": 3}, k_scale=None, v_scale=None, query_start_loc=qsl, token_to_req_indices=t2r)
    assert c["total_q"] == 8  # 8 rows for 4 requests: fine when ragged, whatever decode_query_len says


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


# ---- call plans: the checks run once per shape (sparsejit/_plan.py) ----


class FakeLib:
    """Records each launch's packed struct instead of launching."""

    def __init__(self):
        self.launches = []
        self.on_launch = None

    def _record(self, kind, handle, address, stream):
        raw = ctypes.string_at(address, _abi.DECODE_FORMAT.size if kind == "decode" else _abi.PREFILL_FORMAT.size)
        self.launches.append((kind, raw, stream))
        if self.on_launch is not None:
            self.on_launch(raw)
        return 0

    def prefill(self, handle, address, stream):
        return self._record("prefill", handle, address, stream)

    def decode(self, handle, address, stream):
        return self._record("decode", handle, address, stream)

    def raise_for(self, status, where=""):
        raise sparsejit.SparsejitError(status, where)


class FakeRuntime:
    def __init__(self, index):
        self.lib = FakeLib()
        self.handle = 0x1000 + index
        self.workspace_bytes = 0

    def decode_workspace_bytes(self, total_q, num_heads, num_kv_heads, head_dim, topk):
        return self.workspace_bytes


@pytest.fixture(autouse=True)
def no_cached_plans():
    """Every test starts and ends with empty plan caches (a plan holds its runtime)."""
    sjt.clear_plans()
    yield
    sjt.clear_plans()


@pytest.fixture
def fake_runtime(monkeypatch):
    """sparsejit.torch on fake runtimes (one per device index), streams and workspaces; no GPU, no torch."""
    runtimes = {}
    monkeypatch.setattr(sjt, "runtime_for_device", lambda index: runtimes.setdefault(index, FakeRuntime(index)))
    monkeypatch.setattr(sjt, "_raw_stream", lambda index: 0x5000 + index)
    workspaces = []

    def alloc(nbytes, device):
        workspaces.append(FakeTensor((nbytes,), "uint8", device))
        return workspaces[-1]

    monkeypatch.setattr(sjt, "_alloc_workspace", alloc)
    rt = runtimes.setdefault(0, FakeRuntime(0))
    rt.runtimes, rt.workspaces = runtimes, workspaces
    return rt


@pytest.fixture
def checks(monkeypatch):
    """Counts the full checks (_validate.*_fields calls) that sparsejit.torch runs."""
    count = {"prefill": 0, "decode": 0}
    for kind in ("prefill", "decode"):
        real = getattr(_validate, f"{kind}_fields")

        def counted(*args, _real=real, _kind=kind, **kw):
            count[_kind] += 1
            return _real(*args, **kw)

        monkeypatch.setattr(_validate, f"{kind}_fields", counted)
    return count


def fresh(kw):
    """The same arguments (shapes, strides, dtypes, devices, scalars) in new tensors: new data pointers."""
    out = {}
    for k, v in kw.items():
        out[k] = FakeTensor(v.shape, v.dtype, v.device, v.stride()) if isinstance(v, FakeTensor) else v
    return out


_prefill_fields, _decode_fields = _validate.prefill_fields, _validate.decode_fields  # not counted by `checks`


def uncached_struct(kind, kw, workspace=None):
    """What the pre-plan code packed for these arguments (checks + a full pack)."""
    kw = {"k_scale": None, "v_scale": None, **kw}
    if kind == "prefill":
        fields, _ = _prefill_fields(**kw)
        return _abi.PREFILL_FORMAT.pack(*fields)
    fields, _ = _decode_fields(**kw)
    ws = (workspace.data_ptr(), workspace.shape[0]) if workspace is not None else (0, 0)
    return _abi.DECODE_FORMAT.pack(*fields, *ws, 0, 0)  # uniform: no ragged pointers


def fp8_scales(kind, mode, kvh=1, pages=8):
    if mode == "scalar":
        return dict(k_scale=FakeTensor((1,), "float32"), v_scale=FakeTensor((1,), "float32"))
    return dict(k_scale=FakeTensor((kvh, pages * 128), "float32"), v_scale=FakeTensor((kvh, pages * 128), "float32"))


PLAN_CASES = {
    "prefill-4d": ("prefill", lambda: prefill_inputs(layout=4)),
    "prefill-5d-fp8-per-token": ("prefill", lambda: {**prefill_inputs(layout=5, kv_dtype="float8_e4m3fn"), **fp8_scales("prefill", "per_token")}),
    "decode-4d": ("decode", lambda: decode_inputs(layout=4)),
    "decode-5d-mtp": ("decode", lambda: decode_inputs(layout=5, reqs=3, qlen=2, kvh=2)),
    "decode-fp8-scalar": ("decode", lambda: {**decode_inputs(kv_dtype="float8_e5m2"), **fp8_scales("decode", "scalar")}),
}


@pytest.mark.parametrize("workspace_bytes", [0, 4096])
@pytest.mark.parametrize("case", sorted(PLAN_CASES))
def test_plan_hit_skips_the_checks_and_packs_what_they_pack(fake_runtime, checks, case, workspace_bytes):
    kind, make = PLAN_CASES[case]
    fake_runtime.workspace_bytes = workspace_bytes
    call = prefill if kind == "prefill" else decode
    first = make()
    calls = [first] + [fresh(first) for _ in range(3)]
    for kw in calls:
        call(**kw)
    assert checks[kind] == 1, "one full check for four calls of one shape"
    assert sjt.plan_cache_info()[kind] == {"plans": 1, "maxsize": _plan.MAX_PLANS, "builds": 1}
    launches = fake_runtime.lib.launches
    assert [k for k, _, _ in launches] == [kind] * 4
    assert all(stream == 0x5000 for _, _, stream in launches)
    workspaces = iter(fake_runtime.workspaces)
    for kw, (_, raw, _) in zip(calls, launches):
        ws = next(workspaces) if kind == "decode" and workspace_bytes else None
        assert raw == uncached_struct(kind, kw, ws), "the plan's struct differs from a full pack"
    kw = {"k_scale": None, "v_scale": None, **first}
    if kind == "prefill":
        key = _plan.prefill_key(kw["q"], kw["num_kv_heads"], kw["sm_scale"], kw["max_query_len"], kw["k_scale"], kw["v_scale"])
    else:
        key = _plan.decode_key(kw["q"], kw["num_kv_heads"], kw["sm_scale"], kw["decode_query_len"], kw["k_scale"], kw["v_scale"])
    assert list((sjt._PREFILL if kind == "prefill" else sjt._DECODE)) == [key], "the inline key is _plan's key"
    if kind == "decode" and not workspace_bytes:
        assert fake_runtime.workspaces == [], "one split-K chunk: no workspace is allocated"
        assert _abi.DECODE_FORMAT.unpack(launches[0][1])[-2:] == (0, 0), "NULL workspace, 0 bytes"


def test_metadata_changes_miss_and_are_checked(fake_runtime, checks):
    base = decode_inputs(reqs=4)
    cuda1 = FakeDevice("cuda", 1)
    variants = {
        "base": base,
        "fp16": {**base, "q": FakeTensor((4, 16, 128), "float16"), "output": FakeTensor((4, 16, 128), "float16")},
        "q strided": {**base, "q": FakeTensor((4, 16, 128), "bfloat16", strides=(4096, 256, 1))},
        "kv strided": {**base, "kv_cache": FakeTensor((8, 1, 128, 256), "bfloat16", strides=(65536, 65536, 512, 1))},
        "sm_scale": {**base, "sm_scale": 0.5},
        "sm_scale int": {**base, "sm_scale": 1},
        "all on cuda:1": {k: FakeTensor(v.shape, v.dtype, cuda1) if isinstance(v, FakeTensor) else v for k, v in base.items()},
        "block_table wider": {**base, "block_table": FakeTensor((4, 6), "int32")},
        "scales given (ignored: bf16 KV)": {**base, **fp8_scales("decode", "scalar")},
    }
    for i, (name, kw) in enumerate(variants.items(), 1):
        decode(**kw)
        assert checks["decode"] == i, f"{name}: no full check"
        index = kw["q"].device.index
        _, raw, stream = fake_runtime.runtimes[index].lib.launches[-1]
        assert raw == uncached_struct("decode", kw), name
        assert stream == 0x5000 + index, "launched on the stream of the tensors' device"
    assert len(fake_runtime.runtimes[1].lib.launches) == 1 and len(fake_runtime.lib.launches) == len(variants) - 1
    for kw in variants.values():  # every one is cached now
        decode(**fresh(kw))
    assert checks["decode"] == len(variants)


def raised(fn, kw):
    try:
        fn(**kw)
    except Exception as e:  # noqa: BLE001 - comparing exactly what escapes
        return type(e), str(e)
    return None


class TensorLookalike:
    """The metadata of a tensor without data_ptr(): the checks reject it as not a tensor."""

    def __init__(self, t):
        self.shape, self.dtype, self.device, self._strides = t.shape, t.dtype, t.device, t.stride()

    def stride(self, i=None):
        return self._strides if i is None else self._strides[i]

    def dim(self):
        return len(self.shape)


def invalid_after_valid_cases():
    d = decode_inputs(reqs=4)
    p = prefill_inputs()
    fp8 = {**decode_inputs(kv_dtype="float8_e4m3fn"), **fp8_scales("decode", "scalar")}
    cases = {
        # Same shapes as the cached call, one piece of metadata off.
        "kv_cache on cuda:1": ("decode", d, {"kv_cache": FakeTensor(d["kv_cache"].shape, "bfloat16", FakeDevice("cuda", 1))}),
        "q on cpu": ("decode", d, {"q": FakeTensor(d["q"].shape, "bfloat16", FakeDevice("cpu", None))}),
        "seq_lens non-contiguous": ("decode", d, {"seq_lens": FakeTensor((4,), "int32", strides=(2,))}),
        "block_table rows non-contiguous": ("decode", d, {"block_table": FakeTensor((4, 4), "int32", strides=(1, 4))}),
        "topk_idx int64": ("decode", d, {"topk_idx": FakeTensor(d["topk_idx"].shape, "int64")}),
        "output float16": ("decode", d, {"output": FakeTensor(d["output"].shape, "float16")}),
        "num_kv_heads 1.0 (== 1)": ("decode", d, {"num_kv_heads": 1.0}),
        "decode_query_len 1.0 (== 1)": ("decode", d, {"decode_query_len": 1.0}),
        "sm_scale nan": ("decode", d, {"sm_scale": float("nan")}),
        "sm_scale str": ("decode", d, {"sm_scale": "x"}),
        "sm_scale list (unhashable)": ("decode", d, {"sm_scale": [0.08]}),
        "q not a tensor": ("decode", d, {"q": TensorLookalike(d["q"])}),
        "kv_cache not a tensor": ("decode", d, {"kv_cache": TensorLookalike(d["kv_cache"])}),
        "fp8 v_scale missing": ("decode", fp8, {"v_scale": None}),
        "fp8 k_scale bf16": ("decode", fp8, {"k_scale": FakeTensor((1,), "bfloat16")}),
        "fp8 v_scale on cuda:1": ("decode", fp8, {"v_scale": FakeTensor((1,), "float32", FakeDevice("cuda", 1))}),
        "prefill max_query_len 3.0": ("prefill", p, {"max_query_len": 3.0}),
        "prefill prefix_lens strided": ("prefill", p, {"prefix_lens": FakeTensor((2,), "int32", strides=(3,))}),
        "prefill cu_seqlens_q int64": ("prefill", p, {"cu_seqlens_q": FakeTensor((3,), "int64")}),
        "prefill cu_seqlens_q not a tensor": ("prefill", p, {"cu_seqlens_q": TensorLookalike(p["cu_seqlens_q"])}),
    }
    return cases


@pytest.mark.parametrize("name", sorted(invalid_after_valid_cases()))
def test_invalid_call_after_a_valid_one_raises_exactly_what_it_raised_uncached(fake_runtime, name):
    kind, valid, change = invalid_after_valid_cases()[name]
    call = prefill if kind == "prefill" else decode
    invalid = {**fresh(valid), **change}
    cold = raised(call, invalid)
    assert cold is not None, "the case must be invalid"
    call(**valid)
    assert sjt.plan_cache_info()[kind]["plans"] == 1
    launches = len(fake_runtime.lib.launches)
    assert raised(call, invalid) == cold, "a cached plan changed the error"
    assert raised(call, invalid) == cold
    assert len(fake_runtime.lib.launches) == launches, "an invalid call was launched"


def test_the_guard_covers_everything_the_checks_read():
    """The checks may read only what a plan's guard compares (dim() and numel() follow from shape; data_ptr() is per call)."""
    read = set()

    class Recording(FakeTensor):
        def __getattribute__(self, name):
            if not name.startswith("_"):
                read.add(name)
            return object.__getattribute__(self, name)

    def recording(kw):
        return {k: Recording(v.shape, v.dtype, v.device, v.stride()) if isinstance(v, FakeTensor) else v for k, v in kw.items()}

    for mode in ("scalar", "per_token"):
        _validate.decode_fields(**recording({**decode_inputs(kv_dtype="float8_e4m3fn", layout=5), **fp8_scales("decode", mode)}))
        _validate.prefill_fields(**recording({**prefill_inputs(kv_dtype="float8_e5m2"), **fp8_scales("prefill", mode)}))
    assert read <= {"shape", "stride", "dtype", "device", "dim", "numel", "data_ptr"}, read
    read.clear()
    _plan.metadata([Recording((2, 3), "int32")])
    assert read == {"shape", "stride", "dtype", "device"}


def test_the_plan_cache_is_bounded(fake_runtime, checks, monkeypatch):
    monkeypatch.setattr(sjt._decode_plans, "maxsize", 4)
    shapes = [decode_inputs(reqs=r) for r in range(1, 7)]
    for kw in shapes:
        decode(**kw)
    info = sjt.plan_cache_info()["decode"]
    assert info["plans"] == 4 and info["builds"] == 6
    for kw in shapes[2:]:  # the newest four are cached
        decode(**fresh(kw))
    assert checks["decode"] == 6
    again = fresh(shapes[0])
    decode(**again)  # the oldest went first: checked again, still right
    assert checks["decode"] == 7 and sjt.plan_cache_info()["decode"]["plans"] == 4
    assert fake_runtime.lib.launches[-1][1] == uncached_struct("decode", again)


def test_plans_share_a_bucket_when_only_other_tensors_differ(fake_runtime, checks, monkeypatch):
    base = decode_inputs(reqs=4, pages=8)
    kv_shapes = [(8 + i, 1, 128, 256) for i in range(_plan.MAX_BUCKET + 2)]  # same q and scalars: one dict key
    calls = [{**base, "kv_cache": FakeTensor(shape, "bfloat16")} for shape in kv_shapes]
    for kw in calls[:3]:
        decode(**kw)
    assert len(sjt._DECODE) == 1 and sjt.plan_cache_info()["decode"]["plans"] == 3
    for kw in calls[:3]:  # each found in the bucket by its guard
        again = fresh(kw)
        decode(**again)
        assert fake_runtime.lib.launches[-1][1] == uncached_struct("decode", again)
    assert checks["decode"] == 3
    for kw in calls[3:]:
        decode(**kw)
    assert sjt.plan_cache_info()["decode"]["plans"] == _plan.MAX_BUCKET, "a bucket is bounded too"
    decode(**fresh(calls[0]))  # the oldest left the bucket
    assert checks["decode"] == len(calls) + 1


def test_calls_whose_key_could_go_stale_are_checked_every_time(fake_runtime, checks):
    class Scale(float):  # a float subclass could compare equal to a different value
        pass

    kw = decode_inputs()
    for _ in range(3):
        decode(**{**fresh(kw), "sm_scale": Scale(0.125)})
    assert checks["decode"] == 3 and sjt.plan_cache_info()["decode"]["plans"] == 0
    no_index = FakeDevice("cuda", None)  # which device it names depends on the current device
    kw = {k: FakeTensor(v.shape, v.dtype, no_index) if isinstance(v, FakeTensor) else v for k, v in kw.items()}
    sjt.clear_plans()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sjt, "_device_index", lambda device: 0)
        for _ in range(2):
            decode(**fresh(kw))
    assert checks["decode"] == 5 and sjt.plan_cache_info()["decode"]["plans"] == 0


def test_empty_calls_are_cached_and_launch_nothing(fake_runtime, checks):
    p = prefill_inputs()
    for _ in range(2):
        prefill(**{**fresh(p), "max_query_len": 0})
        decode(**decode_inputs(reqs=0))
    assert fake_runtime.lib.launches == []
    assert checks == {"prefill": 1, "decode": 1}


def test_threads_never_see_each_others_pointers(fake_runtime):
    """Two threads on one plan: each launch carries the calling thread's own pointers."""
    local = threading.local()
    errors = []

    def check(raw):
        got = _abi.DECODE_FORMAT.unpack(raw)
        if (got[0], got[_plan.D_OUTPUT]) != local.expected:
            errors.append((got[0], local.expected))
        time.sleep(0)  # as ctypes would, let the other thread run mid-call

    fake_runtime.lib.on_launch = check
    base = decode_inputs()
    local.expected = (base["q"].data_ptr(), base["output"].data_ptr())
    decode(**base)

    def worker():
        for _ in range(300):
            kw = fresh(base)
            local.expected = (kw["q"].data_ptr(), kw["output"].data_ptr())
            decode(**kw)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert errors == []
    assert len(fake_runtime.lib.launches) == 1 + 4 * 300 and sjt.plan_cache_info()["decode"]["builds"] == 1


def test_a_failed_launch_raises_on_a_hit_too(fake_runtime):
    kw = decode_inputs()
    decode(**kw)
    fake_runtime.lib.decode = lambda handle, address, stream: _abi.ERROR_LAUNCH
    for _ in range(2):
        with pytest.raises(sparsejit.SparsejitError, match="minimax_m3_sparse_attn_decode"):
            decode(**fresh(kw))


def test_field_tables_match_the_formats():
    assert len(_abi.PREFILL_FIELDS) == len(_abi.PREFILL_OFFSETS) == 42
    assert len(_abi.DECODE_FIELDS) == len(_abi.DECODE_OFFSETS) == 44
    assert _abi.PREFILL_OFFSETS["sm_scale"] == (316, "f") and _abi.DECODE_OFFSETS["workspace_bytes"] == (312, "Q")
    assert (_plan.D_WORKSPACE, _plan.P_OUTPUT, _plan.D_OUTPUT) == (38, 27, 25)


def test_torch_tensor_guard_rejects_every_metadata_change():
    """torch's C++ guard (used for real tensors) against what the checks need; runs wherever torch imports."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    make = _plan.torch_tensor_guard(torch)
    if make is None:
        pytest.skip(f"torch {torch.__version__}: no usable TensorGuards (the Python guard is used)")
    q = torch.empty(4, 16, 128, dtype=torch.bfloat16)
    seq = torch.empty(4, dtype=torch.int32)
    check = make(q, seq).check
    assert check(torch.empty_like(q), torch.empty_like(seq))
    assert not check(q.transpose(0, 1).contiguous().transpose(0, 1), seq), "strides"
    assert not check(q[:, :, :64], seq), "a strided view"
    assert not check(q.half(), seq), "dtype"
    assert not check(torch.empty(4, 16, 128, dtype=torch.bfloat16, device="meta"), seq), "device type"
    assert not check(q, torch.empty(8, dtype=torch.int32)[::2]), "non-contiguous seq_lens"
    assert not check(q, torch.empty(5, dtype=torch.int32)), "shape"
    assert not check(q, q), "the same tensor twice"
    assert not check(None, seq), "not a tensor"
