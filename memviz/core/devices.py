"""Whether a CUDA device can be had here, asked without importing torch.

The window and the CLI refuse ``--device cuda`` on a machine that cannot run it
before a worker starts (a worker takes seconds to import torch to find out).
Where the answer is not certain (a frozen bundle, no NVML), nothing is refused
here and the worker checks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re

_CUDA_LINE = re.compile(r"^cuda(?::[^=]*)?=\s*(None|'[^']*'|\"[^\"]*\")", re.MULTILINE)
_VERSION_LINE = re.compile(r"^__version__\s*=\s*'([^']*)'", re.MULTILINE)


def torch_build() -> tuple[str, bool] | None:
    """(torch's version, whether it was built with CUDA), from its version file."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), "version.py")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(8192)
    except OSError:
        return None
    cuda, version = _CUDA_LINE.search(text), _VERSION_LINE.search(text)
    if cuda is None:
        return None
    return (version.group(1) if version else "?"), cuda.group(1) != "None"


def nvidia_gpus() -> int | None:
    """How many NVIDIA GPUs NVML sees (0 without a driver), None if it cannot say."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except pynvml.NVMLError:
        return None
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def device_refusal(device: str) -> str | None:
    """Why ``device`` cannot run here, or None (CPU, or not known for sure)."""
    if not device.startswith("cuda"):
        return None
    build = torch_build()
    if build is not None and not build[1]:
        return (f"device {device} asked for, but this torch ({build[0]}) is a CPU build: "
                "install a CUDA build of torch, or use --device cpu")
    count = nvidia_gpus()
    if count == 0:
        return f"device {device} asked for, but no NVIDIA GPU or driver was found here"
    index = int(device.partition(":")[2] or 0)
    if count is not None and index >= count:
        return f"device {device} asked for, but this machine has {count} GPU(s)"
    return None
