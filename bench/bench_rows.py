"""What the benchmark scripts read from sparsejit_bench's JSON lines, by one rule."""


def read_bytes(r):
    """The selected KV bytes one call reads: kv_read_bytes; in older bench output, kv_bytes,
    which count bf16's 2 bytes an element (fp8 K/V read half of them)."""
    if "kv_read_bytes" in r:
        return r["kv_read_bytes"]
    kv = r.get("kv_bytes")
    return kv / 2 if kv and str(r.get("kv_dtype", "")).startswith("fp8") else kv
