"""sparsejit: run-time generated block-sparse GQA attention kernels (MiniMax-M3).

This core module imports without torch and without a GPU; the library
(libsparsejit.so) is loaded on first use. The torch drop-ins for vLLM's two
functions are in ``sparsejit.torch``.
"""

from ._abi import (
    GraphCaptureError,
    LibraryNotFoundError,
    NoDeviceError,
    SparsejitArgumentError,
    SparsejitError,
    load_library,
)
from ._runtime import Runtime, cache_status, runtime_for_device

__all__ = [
    "GraphCaptureError",
    "LibraryNotFoundError",
    "NoDeviceError",
    "Runtime",
    "SparsejitArgumentError",
    "SparsejitError",
    "cache_status",
    "load_library",
    "runtime_for_device",
]
__version__ = "0.1.0"
