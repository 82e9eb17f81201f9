"""What went wrong in a worker, in the user's terms: a kind, an exit code, one line.

Kinds: ``oom`` (exit 3) for every way memory runs out (torch's OutOfMemoryError on
CUDA, the CPU allocator's "can't allocate memory", Python's MemoryError), ``model``
and ``option`` (exit 2) for the user's input, ``internal`` (exit 1) for the rest.
"""

from __future__ import annotations

import re

EXIT_USER_ERROR = 2
EXIT_OOM = 3

_CPU_OOM = "DefaultCPUAllocator: can't allocate memory"
_CPU_REQUEST = re.compile(r"you tried to allocate (\d+) bytes")
_CUDA_REQUEST = re.compile(r"Tried to allocate ([0-9.]+) (B|KiB|MiB|GiB|TiB)")
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(exc, RuntimeError) and _CPU_OOM in str(exc)


def request_bytes(exc: BaseException) -> int | None:
    """The size of the allocation that failed, where the allocator says it."""
    text = str(exc)
    found = _CPU_REQUEST.search(text)
    if found:
        return int(found.group(1))
    found = _CUDA_REQUEST.search(text)
    if found:
        return int(float(found.group(1)) * _UNITS[found.group(2)])
    return None


def classify(exc: BaseException) -> tuple[str, int]:
    from ..core.spec import ModelError, SpecError
    from ..models import ModelLoadError

    if is_oom(exc):
        return "oom", EXIT_OOM
    if isinstance(exc, ModelLoadError | ModelError):
        return "model", EXIT_USER_ERROR
    if isinstance(exc, SpecError):
        return "option", EXIT_USER_ERROR
    return "internal", 1


def one_line(exc: BaseException) -> str:
    if is_oom(exc):
        wanted = request_bytes(exc)
        asked = "" if wanted is None else f": a request for {wanted / (1 << 20):,.1f} MiB failed"
        return f"out of memory{asked}"
    if isinstance(exc, SystemExit):
        return f"the run called sys.exit({exc.code!r})"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
