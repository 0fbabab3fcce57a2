"""One sparsejit runtime per device, created on first use and kept for the process."""

from __future__ import annotations

import ctypes
import json
import threading

from . import _abi


class _Options(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("device", ctypes.c_int32)]  # sj_runtime_options


class Runtime:
    """An ``sj_runtime*`` on one device ordinal."""

    def __init__(self, device: int):
        lib = _abi.load_library()
        options = _Options(ctypes.sizeof(_Options), device)
        handle = ctypes.c_void_p()
        st = lib.runtime_create(ctypes.addressof(options), ctypes.byref(handle))
        if st != _abi.OK:
            lib.raise_for(st, f"sparsejit runtime for device {device}")
        self.lib = lib
        self.device = device
        self.handle = handle.value
        self._workspace_bytes: dict[tuple, int] = {}

    def decode_workspace_bytes(self, total_q: int, num_heads: int, num_kv_heads: int, head_dim: int, topk: int) -> int:
        key = (total_q, num_heads, num_kv_heads, head_dim, topk)
        n = self._workspace_bytes.get(key)
        if n is None:
            out = ctypes.c_uint64(0)
            st = self.lib.decode_workspace_bytes(self.handle, total_q, num_heads, num_kv_heads, head_dim, topk, ctypes.byref(out))
            if st != _abi.OK:
                self.lib.raise_for(st, "decode_workspace_bytes")
            n = self._workspace_bytes[key] = out.value
        return n

    def _shape(self, num_heads, num_kv_heads, head_dim, topk, q_dtype, kv_dtype, scale_mode):
        buf = ctypes.create_string_buffer(_abi.SHAPE_FORMAT.size)
        _abi.SHAPE_FORMAT.pack_into(buf, 0, num_heads, num_kv_heads, head_dim, topk, q_dtype, kv_dtype, scale_mode, 0)
        return buf

    def warm_prefill(self, num_heads, num_kv_heads, head_dim, topk, q_dtype=0, kv_dtype=0, scale_mode=0) -> None:
        """Builds and loads the prefill kernel for these shapes (dtype/scale codes as in sparsejit.h)."""
        buf = self._shape(num_heads, num_kv_heads, head_dim, topk, q_dtype, kv_dtype, scale_mode)
        st = self.lib.warm_prefill(self.handle, ctypes.addressof(buf))
        if st != _abi.OK:
            self.lib.raise_for(st, "warm_prefill")

    def warm_decode(self, num_heads, num_kv_heads, head_dim, topk, q_dtype=0, kv_dtype=0, scale_mode=0, total_q=0) -> None:
        """Builds and loads decode's kernels; total_q <= 0 warms every split-K chunk count."""
        buf = self._shape(num_heads, num_kv_heads, head_dim, topk, q_dtype, kv_dtype, scale_mode)
        st = self.lib.warm_decode(self.handle, ctypes.addressof(buf), total_q)
        if st != _abi.OK:
            self.lib.raise_for(st, "warm_decode")

    def cache_status(self) -> dict:
        return json.loads(self.lib.cache_status(self.handle))


_runtimes: dict[int, Runtime] = {}
_lock = threading.Lock()


def runtime_for_device(device: int) -> Runtime:
    """The process's Runtime for a device ordinal (created on first use; never destroyed,
    since CUDA tears itself down at exit in an order no destructor can rely on)."""
    rt = _runtimes.get(device)
    if rt is None:
        with _lock:
            rt = _runtimes.get(device)
            if rt is None:
                rt = _runtimes[device] = Runtime(device)
    return rt


def cache_status() -> dict:
    """The kernel cache's state (path, mode, entries, bytes); needs no GPU."""
    return json.loads(_abi.load_library().cache_status(None))
