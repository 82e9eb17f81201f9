"""The memory cap every run gets: what the user asked for, or a safe default.

A run without a cap grows until the kernel's OOM killer picks a victim, which
may be the window or another program. By default a run may use
``DEFAULT_SHARE`` of the memory available when it starts; past its cap the
session stops the worker and the run fails with kind ``oom``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil

from ..core.sizes import SizeTooLarge, parse_size
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
        how = (f" ({DEFAULT_SHARE:.0%} of the memory available at start, within a "
               "container's limit)") if self.automatic else ""
        return f"{self.bytes / (1 << 20):,.0f} MiB of {what}{how}"


UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a number near 2**63


def container_room_bytes(cgroup_root: Path = Path("/sys/fs/cgroup"),
                         proc_cgroup: Path = Path("/proc/self/cgroup")) -> int | None:
    """What this process's memory cgroups (a container's, a systemd slice's, a pod's
    limit) still allow: the least, over the process's own cgroup and every one above
    it, of each limit less that cgroup's usage (v2: ``memory.max`` and
    ``memory.high``; v1: ``memory.limit_in_bytes``); None where no limit applies. A
    limit usually sits on a parent (the pod, the slice), not on the process's own
    cgroup, and the kernel acts at the lowest room, whatever the host has free."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one unified hierarchy
            top, files = cgroup_root, ("memory.max", "memory.high")
            usage_file = "memory.current"
        elif "memory" in controllers.split(","):  # v1: the memory controller's own
            top, files = cgroup_root / "memory", ("memory.limit_in_bytes",)
            usage_file = "memory.usage_in_bytes"
        else:
            continue
        for folder in _up_to(top, path):
            usage = _read_int(folder / usage_file) or 0
            for name in files:
                limit = _read_int(folder / name)
                if limit is not None and limit < UNLIMITED:
                    rooms.append(max(0, limit - usage))
    return min(rooms) if rooms else None


def _up_to(top: Path, path: str) -> list[Path]:
    """The folders of cgroup ``path`` and of each cgroup above it, up to ``top``. A path
    that climbs out (``..``) is cut at ``top``."""
    parts = [p for p in path.strip("/").split("/") if p not in ("", ".", "..")]
    return [top.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def default_cap_bytes() -> int:
    """``DEFAULT_SHARE`` of the memory available: the host's, or the container's room
    if that is less."""
    available = psutil.virtual_memory().available
    room = container_room_bytes()
    return int(min(available, room if room is not None else available) * DEFAULT_SHARE)


def parse_cap(text: str | None, device: str = "cpu") -> MemoryCap:
    """``SIZE`` (RSS on CPU, GPU memory on CUDA), ``none`` or ``auto`` (the default)."""
    value = (text or AUTO).strip().lower()
    if value == NONE:
        return MemoryCap(None)
    if value == AUTO:
        return MemoryCap(default_cap_bytes(), automatic=True)
    try:
        size = parse_size(value)
    except SpecError as exc:
        if isinstance(exc, SizeTooLarge):
            raise
        raise SpecError(f"a memory cap is a size like 8GiB, 'auto' or 'none', not {text!r}") \
            from None
    return MemoryCap(size, device_memory=device.startswith("cuda"))
