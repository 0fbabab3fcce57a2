"""Minimal stand-ins for torch tensors: just what sparsejit's checks read."""

import itertools
import math

_ptr = itertools.count(0x7F0000000000, 1 << 20)


class FakeDtype:
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return f"torch.{self.name}"

    def __eq__(self, other):
        return isinstance(other, FakeDtype) and other.name == self.name

    def __hash__(self):
        return hash(("fake", self.name))


class FakeDevice:
    def __init__(self, type_, index=0):
        self.type = type_
        self.index = index

    def __eq__(self, other):
        return isinstance(other, FakeDevice) and (other.type, other.index) == (self.type, self.index)

    def __hash__(self):  # hashable like torch.device (call plans key on it)
        return hash((self.type, self.index))

    def __repr__(self):
        return f"{self.type}:{self.index}" if self.index is not None else self.type

    __str__ = __repr__


CUDA0 = FakeDevice("cuda", 0)


class FakeTensor:
    def __init__(self, shape, dtype, device=CUDA0, strides=None):
        self.shape = tuple(shape)
        self.dtype = FakeDtype(dtype) if isinstance(dtype, str) else dtype
        self.device = device
        if strides is None:
            strides, acc = [], 1
            for n in reversed(self.shape):
                strides.insert(0, acc)
                acc *= max(n, 1)
        self._strides = tuple(strides)
        self._ptr = next(_ptr)

    def dim(self):
        return len(self.shape)

    def stride(self, i=None):
        return self._strides if i is None else self._strides[i]

    def numel(self):
        return math.prod(self.shape)

    def data_ptr(self):
        return self._ptr


def prefill_inputs(total_q=6, heads=16, kvh=1, d=128, topk=4, batch=2, pages=8, layout=4, kv_dtype="bfloat16"):
    """A consistent set of prefill arguments (as keyword args)."""
    kv_shape = (pages, kvh, 128, 2 * d) if layout == 4 else (pages, 2, 128, kvh, d)
    return dict(
        q=FakeTensor((total_q, heads, d), "bfloat16"),
        kv_cache=FakeTensor(kv_shape, kv_dtype),
        topk_idx=FakeTensor((kvh, total_q, topk), "int32"),
        block_table=FakeTensor((batch, 4), "int32"),
        cu_seqlens_q=FakeTensor((batch + 1,), "int32"),
        seq_lens=FakeTensor((batch,), "int32"),
        prefix_lens=FakeTensor((batch,), "int32"),
        max_query_len=3,
        num_kv_heads=kvh,
        sm_scale=d**-0.5,
        output=FakeTensor((total_q, heads, d), "bfloat16"),
    )


def decode_inputs(reqs=4, qlen=1, heads=16, kvh=1, d=128, topk=4, pages=8, layout=4, kv_dtype="bfloat16"):
    kv_shape = (pages, kvh, 128, 2 * d) if layout == 4 else (pages, 2, 128, kvh, d)
    total_q = reqs * qlen
    return dict(
        q=FakeTensor((total_q, heads, d), "bfloat16"),
        kv_cache=FakeTensor(kv_shape, kv_dtype),
        topk_idx=FakeTensor((kvh, total_q, topk), "int32"),
        block_table=FakeTensor((reqs, 4), "int32"),
        seq_lens=FakeTensor((reqs,), "int32"),
        num_kv_heads=kvh,
        sm_scale=d**-0.5,
        output=FakeTensor((total_q, heads, d), "bfloat16"),
        decode_query_len=qlen,
    )
