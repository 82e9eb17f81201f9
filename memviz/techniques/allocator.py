"""``allocator``: the memory allocator's own settings, a technique like any other.

On CPU, glibc decides how much of what torch frees goes back to the system:
``mmap_threshold`` (bytes) makes allocations above it separate mappings that
are returned at free, ``trim_threshold`` bounds the free memory kept at the
heap's top, and ``trim=true`` calls ``malloc_trim(0)`` after every step. They
are set with ``mallopt`` in the worker before the model loads (the
``MALLOC_*_`` environment variables are read only when a process starts).
On CUDA, ``cuda_conf`` becomes ``PYTORCH_CUDA_ALLOC_CONF`` before CUDA starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any

from .base import Param, Technique

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


class Allocator(Technique):
    name = "allocator"
    group = "deployment"
    description = "allocator settings: glibc mmap/trim thresholds and malloc_trim; CUDA alloc conf"
    params = (
        Param("mmap_threshold", int, 131072, "glibc M_MMAP_THRESHOLD in bytes (0: leave)",
              low=0, high=1 << 30),
        Param("trim_threshold", int, 131072, "glibc M_TRIM_THRESHOLD in bytes (0: leave)",
              low=0, high=1 << 30),
        Param("trim", bool, True, "malloc_trim(0) after every step"),
        Param("cuda_conf", str, "expandable_segments:True", "PYTORCH_CUDA_ALLOC_CONF on CUDA"),
    )
    order = 0

    def refusal(self, spec, params, names) -> str | None:
        if spec.device == "cpu" and _libc() is None:
            return "glibc's mallopt is not available on this system"
        return None

    def prepare_process(self, params: dict[str, Any], device: str) -> None:
        if device.startswith("cuda"):
            os.environ["PYTORCH_CUDA_ALLOC_CONF"] = params["cuda_conf"]
            return
        libc = _libc()
        for option, key in ((M_MMAP_THRESHOLD, "mmap_threshold"),
                            (M_TRIM_THRESHOLD, "trim_threshold")):
            if params[key] and not libc.mallopt(option, params[key]):
                raise OSError(f"mallopt refused {key}={params[key]}")

    def after_step(self, params: dict[str, Any]) -> None:
        libc = _libc()
        if params["trim"] and libc is not None:
            libc.malloc_trim(0)


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - glibc only
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc
