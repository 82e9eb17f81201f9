"""NVIDIA GPU memory through NVML (nvidia-ml-py), and torch.cuda's own counters.

A machine without an NVIDIA GPU or driver is a state (``available=False`` with
a reason), never an exception.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class NvmlDevice:
    available: bool
    reason: str
    index: int = 0
    name: str = ""
    total_bytes: int = 0
    driver: str = ""
    _handle: object = None

    def device_used(self) -> int | None:
        if not self.available:
            return None
        import pynvml

        return int(pynvml.nvmlDeviceGetMemoryInfo(self._handle).used)

    def process_used(self, pid: int | None = None) -> int | None:
        """Bytes NVML attributes to this process (None if it shows none)."""
        if not self.available:
            return None
        import pynvml

        pid = os.getpid() if pid is None else pid
        try:
            procs = pynvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
        except pynvml.NVMLError:
            return None
        used = [p.usedGpuMemory for p in procs if p.pid == pid and p.usedGpuMemory is not None]
        return int(sum(used)) if used else 0

    def describe(self) -> dict:
        return {
            "available": self.available,
            "reason": self.reason,
            "index": self.index,
            "name": self.name,
            "total_bytes": self.total_bytes,
            "driver": self.driver,
        }


NVML_REASONS = {
    "NVMLError_LibraryNotFound": "no NVIDIA driver",
    "NVMLError_DriverNotLoaded": "the NVIDIA driver is not loaded",
    "NVMLError_NoPermission": "no permission to read the NVIDIA GPU",
}


def _nvml_reason(error: str) -> str:
    """What NVML's failure to start means, in words (the error's name stays for the rest)."""
    return NVML_REASONS.get(error, f"no NVIDIA GPU ({error})")


def open_nvml(index: int = 0) -> NvmlDevice:
    try:
        import pynvml
    except ImportError:
        return NvmlDevice(False, "nvidia-ml-py is not installed")
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return NvmlDevice(False, _nvml_reason(type(exc).__name__))
    try:
        if pynvml.nvmlDeviceGetCount() <= index:
            return NvmlDevice(False, f"no NVIDIA GPU with index {index}")
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        name = pynvml.nvmlDeviceGetName(handle)
        return NvmlDevice(
            True, "", index,
            name.decode() if isinstance(name, bytes) else str(name),
            int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
            str(pynvml.nvmlSystemGetDriverVersion()),
            handle,
        )
    except Exception as exc:
        return NvmlDevice(False, f"NVML failed: {exc}")
