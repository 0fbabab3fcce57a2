"""Call plans: a call's argument checks and struct packing done once per shape.

The checks in _validate.py read only metadata: per tensor its shape, strides,
dtype and device, plus the Python scalars and which fp8 scales are given. Two
calls that agree on all of it get the same verdict and the same packed struct
except for the data pointers. A plan is one checked call's verdict: the struct
prepacked with every constant field, so a later call with the same metadata
skips the checks (about 30 us of Python) and writes only its pointers into a
per-thread copy of the struct before the C call.

Finding a call's plan takes two steps, because reading a torch tensor's
metadata from Python costs 100-300 ns an attribute (about 4 us for a decode
call's six tensors):
- a dict key of what is cheap to read: q's shape, the Python scalars with
  their types (1 == 1.0 == True, but only an int passes the int check), and
  which scales are given; it selects a bucket of plans;
- each plan's guard then checks every tensor argument against the call it was
  built from: shape, strides, dtype, device. torch's own C++ tensor guard (the
  one torch.compile uses) does that for all tensors in one call, and stricter
  (also the exact Python type, requires_grad, the dispatch keys and that no
  tensor is passed twice); ``MetadataGuard`` is the exact Python equivalent,
  used where that guard is missing or fails its self-test, and for non-torch
  tensors (the CPU tests' fakes).

What stays safe on a hit:
- Everything the checks read is in the key or the guard, so a call that
  differs in any of it (another device, a non-contiguous view, another dtype)
  misses and is checked in full, raising exactly what an uncached call raises.
- Only checked calls are cached, and only with immutable key values: scalars
  of the exact types int and float (a tensor or a numpy scalar as ``sm_scale``
  is checked on every call), devices with an index, and a guard that accepts
  the very call it was built from.
- The data pointers are never part of a plan: every pointer field a plan uses
  is written on every call.
- Threads: plans and buckets are immutable once built (a bucket is replaced,
  never changed, under the cache's lock); the struct a call writes is the
  calling thread's own (ctypes releases the GIL during the C call).
"""

from __future__ import annotations

import ctypes
import threading

from . import _abi

MAX_PLANS = 1024  # per call kind; realistic serving uses a few dozen shapes
MAX_BUCKET = 8  # plans under one dict key (same q shape and scalars, other tensors' metadata differ)

# Scalar types whose values are immutable and compare by value (see the module docstring).
_PLAIN_SCALARS = (int, float)


def decode_key(q, num_kv_heads, sm_scale, decode_query_len, k_scale, v_scale) -> tuple:
    """The dict key of a decode call (AttributeError when q is not a tensor); torch.py inlines it."""
    return (q.shape, type(num_kv_heads), num_kv_heads, type(sm_scale), sm_scale, type(decode_query_len), decode_query_len,
            k_scale is None, v_scale is None)  # fmt: skip


def prefill_key(q, num_kv_heads, sm_scale, max_query_len, k_scale, v_scale) -> tuple:
    """The dict key of a prefill call (AttributeError when q is not a tensor); torch.py inlines it."""
    return (q.shape, type(num_kv_heads), num_kv_heads, type(sm_scale), sm_scale, type(max_query_len), max_query_len,
            k_scale is None, v_scale is None)  # fmt: skip


def metadata(tensors) -> list:
    """What the checks read of each tensor: shape, strides, dtype, device."""
    return [(t.shape, t.stride(), t.dtype, t.device) for t in tensors]


class MetadataGuard:
    """Accepts tensors whose metadata equals that of the tensors it was built from."""

    __slots__ = ("expected",)

    def __init__(self, *tensors):
        self.expected = metadata(tensors)

    def check(self, *tensors) -> bool:
        try:
            return metadata(tensors) == self.expected
        except AttributeError:  # not a tensor (None for a scale, say)
            return False


def torch_tensor_guard(torch):
    """A maker of torch's C++ tensor guards, when torch has them and they reject every
    change the checks care about; else None. A private API, so it is tested here, at the
    first plan, instead of trusted (the device index is compared too, but a CPU-only
    self-test cannot show it)."""
    try:
        from torch._C._dynamo.guards import TensorGuards

        def guard(*tensors):
            return TensorGuards(*tensors, dynamic_dims_sizes=None, dynamic_dims_strides=None)

        g = guard(torch.empty(2, 3), torch.empty(4, dtype=torch.int32))
        same = g.check(torch.empty(2, 3), torch.empty(4, dtype=torch.int32))
        changed = (
            (torch.empty(3, 2).t(), torch.empty(4, dtype=torch.int32)),  # strides
            (torch.empty(2, 4), torch.empty(4, dtype=torch.int32)),  # shape
            (torch.empty(2, 3, 1), torch.empty(4, dtype=torch.int32)),  # rank
            (torch.empty(2, 3, dtype=torch.float64), torch.empty(4, dtype=torch.int32)),  # dtype
            (torch.empty(2, 3, device="meta"), torch.empty(4, dtype=torch.int32)),  # device type
            (torch.empty(2, 3), torch.empty(8, dtype=torch.int32)[::2]),  # a strided 1-D view
            (None, torch.empty(4, dtype=torch.int32)),  # not a tensor
        )
        if same is True and not any(g.check(*args) for args in changed):
            return guard
    except Exception:  # noqa: BLE001 - any failure means: do not use it
        pass
    return None


def cacheable(device, *scalars) -> bool:
    """Whether a checked call may stand for later ones (see the module docstring)."""
    if getattr(device, "index", None) is None:
        return False
    return all(type(s) in _PLAIN_SCALARS for s in scalars)


class Plan:
    """One checked call: its guard, the struct prepacked with its constant fields (pointers zero), and what a call needs besides."""

    __slots__ = ("check", "empty", "template", "runtime", "device", "device_index", "scaled", "workspace_bytes")

    def __init__(self, *, check=None, empty=False, template=b"", runtime=None, device=None, device_index=-1, scaled=False, workspace_bytes=0):
        self.check = check  # the guard's check(*tensors) -> bool
        self.empty = empty  # nothing to launch (no query rows)
        self.template = template
        self.runtime = runtime
        self.device = device
        self.device_index = device_index
        self.scaled = scaled  # k_scale/v_scale pointers are used (fp8 KV with scales)
        self.workspace_bytes = workspace_bytes  # decode's split-K scratch; 0: none (one chunk)


class PlanCache:
    """Buckets of plans by key, at most ``maxsize`` plans in all (the oldest bucket goes
    first) and MAX_BUCKET in a bucket. Lookups read ``plans`` directly and take no lock;
    adding takes one (misses only) and replaces the bucket tuple, never changes it."""

    def __init__(self, maxsize: int = MAX_PLANS):
        self.plans: dict = {}
        self.maxsize = maxsize
        self.count = 0  # plans in all buckets
        self.builds = 0  # full checks run (misses and uncacheable calls)
        self._lock = threading.Lock()

    def add(self, key, plan: Plan) -> None:
        with self._lock:
            plans = self.plans
            bucket = plans.pop(key, ())  # re-inserted last: the newest
            self.count -= len(bucket)
            while plans and self.count + len(bucket) >= self.maxsize:
                self.count -= len(plans.pop(next(iter(plans))))  # insertion order: the oldest
            bucket = (bucket + (plan,))[-min(MAX_BUCKET, self.maxsize):]
            plans[key] = bucket
            self.count += len(bucket)

    def clear(self) -> None:
        with self._lock:
            self.plans.clear()  # in place: callers hold the dict
            self.count = 0
            self.builds = 0


def _word(offsets: dict, name: str) -> int:
    """Index of an 8-byte pointer field in the struct seen as uint64 words."""
    offset, code = offsets[name]
    if code != "Q" or offset % 8:
        raise AssertionError(f"{name}: not an aligned pointer field ({code} at {offset})")
    return offset // 8


_PREFILL_POINTERS = ("q", "kv_cache", "topk_idx", "block_table", "cu_seqlens_q", "seq_lens", "prefix_lens", "k_scale", "v_scale", "output")
_DECODE_POINTERS = ("q", "kv_cache", "topk_idx", "block_table", "seq_lens", "k_scale", "v_scale", "output", "workspace")

# Pointer fields, as word indices into the packed structs.
P_Q, P_KV, P_TOPK, P_BLOCK_TABLE, P_CU_SEQLENS, P_SEQ_LENS, P_PREFIX_LENS, P_K_SCALE, P_V_SCALE, P_OUTPUT = (
    _word(_abi.PREFILL_OFFSETS, n) for n in _PREFILL_POINTERS
)
D_Q, D_KV, D_TOPK, D_BLOCK_TABLE, D_SEQ_LENS, D_K_SCALE, D_V_SCALE, D_OUTPUT, D_WORKSPACE = (
    _word(_abi.DECODE_OFFSETS, n) for n in _DECODE_POINTERS
)


_PREFILL_POINTER_FIELDS = tuple(_abi.PREFILL_FIELDS.index(n) for n in _PREFILL_POINTERS)
_DECODE_POINTER_FIELDS = tuple(_abi.DECODE_FIELDS.index(n) for n in _DECODE_POINTERS)


def _template(fmt, pointer_fields: tuple, fields: tuple) -> bytes:
    """The packed struct with the pointer fields zero (a call writes them all)."""
    fields = list(fields)
    for i in pointer_fields:
        fields[i] = 0
    return fmt.pack(*fields)


def prefill_plan(check, fields: tuple, checked: dict, runtime, device_index: int) -> Plan:
    """A plan from _validate.prefill_fields' output."""
    return Plan(
        check=check,
        template=_template(_abi.PREFILL_FORMAT, _PREFILL_POINTER_FIELDS, fields),
        runtime=runtime,
        device=checked["device"],
        device_index=device_index,
        scaled=checked["scale_mode"] != _abi.SCALE_NONE,
    )


def decode_plan(check, fields: tuple, checked: dict, runtime, device_index: int, workspace_bytes: int) -> Plan:
    """A plan from _validate.decode_fields' output (the workspace pointer is written per call)."""
    return Plan(
        check=check,
        template=_template(_abi.DECODE_FORMAT, _DECODE_POINTER_FIELDS, (*fields, 0, workspace_bytes, 0, 0)),
        runtime=runtime,
        device=checked["device"],
        device_index=device_index,
        scaled=checked["scale_mode"] != _abi.SCALE_NONE,
        workspace_bytes=workspace_bytes,
    )


class ArgsSlot:
    """One thread's struct for one call kind. A call copies its plan's template
    in when another plan's is there (``plan``), then writes its pointers."""

    __slots__ = ("buffer", "address", "bytes", "words", "plan")

    def __init__(self, size: int):
        self.buffer = ctypes.create_string_buffer(size)  # malloc'd: aligned as the C struct needs (8)
        self.address = ctypes.addressof(self.buffer)
        self.bytes = memoryview(self.buffer).cast("B")
        self.words = self.bytes.cast("Q")
        self.plan = None  # whose template is in the buffer (a strong reference: identity stays unique)


class ThreadSlots(threading.local):
    """Per-thread structs: ctypes releases the GIL during the call, so threads must not share one."""

    def __init__(self):
        self.prefill = ArgsSlot(_abi.PREFILL_FORMAT.size)
        self.decode = ArgsSlot(_abi.DECODE_FORMAT.size)


slots = ThreadSlots()
