"""ctypes binding of libsparsejit.so (include/sparsejit/sparsejit.h).

The argument structs are packed with precompiled ``struct.Struct`` formats
(one C call for ~40 fields); their sizes are checked against the library's own
``sj_struct_size`` when it is loaded, so a layout drift fails loudly at import
of the library, never as a wrong launch. Every field is named (``*_FIELDS``,
in C order) so the call plans (``_plan.py``) can address a pointer field by
name when they rewrite only the pointers of a prepacked struct.
"""

from __future__ import annotations

import ctypes
import os
import re
import struct
import threading
from pathlib import Path

ABI_VERSION = 1

# sj_status codes
OK = 0
ERROR_INVALID_ARGUMENT = 1
ERROR_NO_DEVICE = 2
ERROR_COMPILE = 3
ERROR_LOAD = 4
ERROR_LAUNCH = 5
ERROR_GRAPH_CAPTURE = 6
ERROR_CACHE = 7
ERROR_BUFFER_TOO_SMALL = 8
ERROR_IO = 9
ERROR_INTERNAL = 10

# sj_dtype / sj_scale_mode codes (include/sparsejit/types.hpp)
DTYPE_CODES = {
    "bfloat16": 0,
    "float16": 1,
    "float8_e4m3fn": 2,
    "float8_e5m2": 3,
    "float8_e4m3fnuz": 4,
    "float8_e5m2fnuz": 5,
}
SCALE_NONE, SCALE_SCALAR, SCALE_PER_TOKEN_HEAD = 0, 1, 2

# Field order of sj_prefill_args / sj_decode_args: pointers as uint64, strides
# and shapes int64, then three int32 codes and the float scale (and for decode
# the workspace pointer and size, then the two ragged-decode pointers). Natural
# alignment everywhere, so '@' == C.
PREFILL_FORMAT = struct.Struct("@Q3qQ4qqqQ3qQqqQQQQQ2q2qQ3q7q3if")
DECODE_FORMAT = struct.Struct("@Q3qQ4qqqQ3qQqqQQQ2q2qQ3q7q3ifQQQQ")
SHAPE_FORMAT = struct.Struct("@4q4i")

# The fields of those formats by name, in C order (one name per packed value).
_PREFILL_HEAD = (
    "q", "q_stride0", "q_stride1", "q_stride2",
    "kv_cache", "kv_stride0", "kv_stride1", "kv_stride2", "kv_stride3", "v_offset", "num_pages",
    "topk_idx", "topk_stride0", "topk_stride1", "topk_stride2",
    "block_table", "block_table_stride", "max_blocks",
)  # fmt: skip
_SCALES_TO_END = (
    "k_scale", "v_scale", "k_scale_stride0", "k_scale_stride1", "v_scale_stride0", "v_scale_stride1",
    "output", "output_stride0", "output_stride1", "output_stride2",
    "total_q", "num_heads", "num_kv_heads", "head_dim", "topk",
)  # fmt: skip
_CODES = ("q_dtype", "kv_dtype", "scale_mode", "sm_scale")
PREFILL_FIELDS = _PREFILL_HEAD + ("cu_seqlens_q", "seq_lens", "prefix_lens") + _SCALES_TO_END + ("batch", "max_query_len") + _CODES
DECODE_FIELDS = (
    _PREFILL_HEAD + ("seq_lens",) + _SCALES_TO_END + ("num_reqs", "decode_query_len") + _CODES + ("workspace", "workspace_bytes", "query_start_loc", "token_to_req_indices")
)


def field_offsets(fmt: struct.Struct, names: tuple) -> dict:
    """{name: (byte offset, struct code)} of every field of a native-aligned format."""
    codes = [c * int(n or 1) for n, c in re.findall(r"(\d*)([a-zA-Z?])", fmt.format.lstrip("@=<>!"))]
    codes = "".join(codes)
    if len(codes) != len(names):
        raise AssertionError(f"{len(names)} field names for {len(codes)} fields of {fmt.format}")
    # Natural alignment: a field's offset is the size of everything up to and including it, less its own size.
    return {name: (struct.calcsize("@" + codes[: i + 1]) - struct.calcsize("@" + c), c) for i, (name, c) in enumerate(zip(names, codes))}


PREFILL_OFFSETS = field_offsets(PREFILL_FORMAT, PREFILL_FIELDS)
DECODE_OFFSETS = field_offsets(DECODE_FORMAT, DECODE_FIELDS)


class SparsejitError(RuntimeError):
    """A failed sparsejit call: ``status`` is the sj_status code, the message is sj_last_error()."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class SparsejitArgumentError(SparsejitError, ValueError):
    """The library rejected an argument (the message names it)."""


class NoDeviceError(SparsejitError):
    """No usable GPU or driver."""


class GraphCaptureError(SparsejitError):
    """A kernel was not warm while the stream was capturing a graph: run the call once before capturing."""


class LibraryNotFoundError(OSError):
    """libsparsejit.so could not be found or loaded."""


_ERROR_CLASSES = {
    ERROR_INVALID_ARGUMENT: SparsejitArgumentError,
    ERROR_NO_DEVICE: NoDeviceError,
    ERROR_GRAPH_CAPTURE: GraphCaptureError,
}


def candidate_paths() -> list[Path]:
    """Where the library is looked for, in order (SPARSEJIT_LIBRARY overrides all)."""
    env = os.environ.get("SPARSEJIT_LIBRARY", "")
    if env:
        return [Path(env)]
    here = Path(__file__).resolve().parent
    repo = here.parent.parent
    paths = [here / "libsparsejit.so", repo / "build" / "libsparsejit.so"]
    paths += sorted(repo.glob("build*/libsparsejit.so"))
    seen, out = set(), []
    for p in paths:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


class Library:
    """The loaded libsparsejit.so with typed entry points."""

    def __init__(self, path: Path):
        self.path = path
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as e:
            raise LibraryNotFoundError(f"sparsejit: cannot load {path}: {e}") from None
        self._lib = lib
        c_void_p, c_int64, c_size_t, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_size_t, ctypes.c_int

        def fn(name, restype, *argtypes):
            f = getattr(lib, name)
            f.restype = restype
            f.argtypes = list(argtypes)
            return f

        self.abi_version = fn("sj_abi_version", c_int)
        self.version = fn("sj_version", ctypes.c_char_p)
        self.struct_size = fn("sj_struct_size", c_size_t, ctypes.c_char_p)
        self.last_error = fn("sj_last_error", ctypes.c_char_p)
        self.status_string = fn("sj_status_string", ctypes.c_char_p, c_int)
        self.runtime_create = fn("sj_runtime_create", c_int, c_void_p, ctypes.POINTER(c_void_p))
        self.runtime_destroy = fn("sj_runtime_destroy", None, c_void_p)
        # Hot path: plain integers in (handle, args address, stream), no conversions.
        self.prefill = fn("sj_sparse_attn_prefill", c_int, c_void_p, c_void_p, c_void_p)
        self.decode = fn("sj_sparse_attn_decode", c_int, c_void_p, c_void_p, c_void_p)
        self.decode_workspace_bytes = fn(
            "sj_decode_workspace_bytes", c_int, c_void_p, c_int64, c_int64, c_int64, c_int64, c_int64, ctypes.POINTER(ctypes.c_uint64)
        )
        self.warm_prefill = fn("sj_warm_prefill", c_int, c_void_p, c_void_p)
        self.warm_decode = fn("sj_warm_decode", c_int, c_void_p, c_void_p, c_int64)
        self.cache_status_json = fn("sj_cache_status_json", c_int, c_void_p, c_void_p, c_size_t, ctypes.POINTER(c_size_t))

        if self.abi_version() != ABI_VERSION:
            raise LibraryNotFoundError(
                f"sparsejit: {path} has C ABI version {self.abi_version()}, this package needs {ABI_VERSION}"
            )
        for name, fmt in (("sj_prefill_args", PREFILL_FORMAT), ("sj_decode_args", DECODE_FORMAT), ("sj_kernel_shape", SHAPE_FORMAT)):
            size = self.struct_size(name.encode())
            if size != fmt.size:
                raise LibraryNotFoundError(f"sparsejit: {path}: {name} is {size} bytes in the library, {fmt.size} here")

    def raise_for(self, status: int, where: str = "") -> None:
        """Raises the exception for a non-zero sj_status, with this thread's sj_last_error()."""
        message = (self.last_error() or b"").decode("utf-8", "replace")
        name = (self.status_string(status) or b"?").decode()
        text = f"{where}: {message}" if where else message
        raise _ERROR_CLASSES.get(status, SparsejitError)(status, f"{text} [{name}]")

    def cache_status(self, runtime: int | None = None) -> str:
        needed = ctypes.c_size_t(0)
        self.cache_status_json(runtime, None, 0, ctypes.byref(needed))
        buf = ctypes.create_string_buffer(needed.value)
        st = self.cache_status_json(runtime, buf, needed.value, ctypes.byref(needed))
        if st != OK:
            self.raise_for(st, "cache_status")
        return buf.value.decode()


_lock = threading.Lock()
_library: Library | None = None


def load_library() -> Library:
    """The process's Library (loaded on first use; SPARSEJIT_LIBRARY, then beside the package, then the build dirs)."""
    global _library
    lib = _library
    if lib is not None:
        return lib
    with _lock:
        if _library is None:
            tried = candidate_paths()
            found = [p for p in tried if p.is_file()]
            if not found:
                listing = "\n  ".join(str(p) for p in tried)
                raise LibraryNotFoundError(
                    "sparsejit: libsparsejit.so not found; looked in:\n  "
                    + listing
                    + "\nBuild it (cmake --build build --target sparsejit_shared) or set SPARSEJIT_LIBRARY=/path/to/libsparsejit.so"
                )
            _library = Library(found[0])
        return _library
