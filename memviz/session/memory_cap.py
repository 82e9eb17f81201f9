"""The memory cap every run gets: what the user asked for, or a safe default.

A run without a cap grows until the kernel's OOM killer picks a victim, which
may be the window or another program. By default a run may use
``DEFAULT_SHARE`` of the memory available when it starts; past its cap the
session stops the worker and the run fails with kind ``oom``.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

from ..core.sizes import parse_size
from ..core.spec import SpecError

DEFAULT_SHARE = 0.8
AUTO, NONE = "auto", "none"


@dataclass(frozen=True)
class MemoryCap:
    """``bytes`` (None: no cap); ``device_memory``: the cap is on GPU memory (an explicit
    cap of a CUDA run), else on the worker's resident memory (RSS)."""

    bytes: int | None
    device_memory: bool = False
    automatic: bool = False

    def describe(self) -> str:
        if self.bytes is None:
            return "no memory cap"
        what = "GPU memory" if self.device_memory else "RSS"
        how = f" ({DEFAULT_SHARE:.0%} of the memory available at start)" if self.automatic else ""
        return f"{self.bytes / (1 << 20):,.0f} MiB of {what}{how}"


def default_cap_bytes() -> int:
    return int(psutil.virtual_memory().available * DEFAULT_SHARE)


def parse_cap(text: str | None, device: str = "cpu") -> MemoryCap:
    """``SIZE`` (RSS on CPU, GPU memory on CUDA), ``none`` or ``auto`` (the default)."""
    value = (text or AUTO).strip().lower()
    if value == NONE:
        return MemoryCap(None)
    if value == AUTO:
        return MemoryCap(default_cap_bytes(), automatic=True)
    try:
        return MemoryCap(parse_size(value), device_memory=device.startswith("cuda"))
    except SpecError:
        raise SpecError(f"a memory cap is a size like 8GiB, 'auto' or 'none', not {text!r}") \
            from None
