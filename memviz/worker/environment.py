"""What the run ran on: versions, host, CPU, memory, GPU state."""

from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata

import psutil

from ..version import __version__
from .gpu import NvmlDevice


def _version_of(package: str) -> str | None:
    """An installed package's version, without importing it: a program under ``memviz
    record`` that never uses transformers must not wait seconds for its import."""
    module = sys.modules.get(package)
    if module is not None and getattr(module, "__version__", None):
        return str(module.__version__)
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe(nvml: NvmlDevice, device: str) -> dict:
    import torch

    cuda = None
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        cuda = {"name": props.name, "total_bytes": int(props.total_memory),
                "capability": f"{props.major}.{props.minor}"}
    return {
        "memviz": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": _version_of("transformers"),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "cpu_count": os.cpu_count(),
        "memory_total_bytes": psutil.virtual_memory().total,
        "torch_cuda_available": bool(torch.cuda.is_available()),
        "nvml": nvml.describe(),
        "cuda": cuda,
    }
