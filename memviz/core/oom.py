"""The last moment before memory ran out: what was live, by category and module.

When a run fails with kind ``oom`` (torch could not allocate, or the run passed
its memory cap and was stopped), everything it streamed up to then is kept. The
moment is the failure's own time where the worker said it, else the last thing
it streamed; what was live then is read from the tracked allocations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .analysis import moment
from .run import Run
from .segments import explain_oom, history_of

TOP_MODULES = 10


def last_moment(run: Run) -> dict[str, Any] | None:
    """The OOM report of a failed run (None unless it ran out of memory)."""
    with run.lock:
        error = run.error or {}
        if error.get("kind") != "oom":
            return None
        t = error.get("t")
        if not isinstance(t, int | float):
            t = _last_streamed(run)
        report: dict[str, Any] = {
            "t": float(t), "message": error.get("message", ""),
            "request_bytes": error.get("request_bytes"), "cap_bytes": error.get("cap_bytes"),
            "peak_bytes": error.get("peak_bytes"), "tracked_bytes": None,
            "by_category": {}, "by_module": [],
        }
        if len(run.tensors):
            at = moment(run.tensors, float(t))
            report.update(tracked_bytes=at.total, by_category=at.by_category,
                          by_module=at.by_module[:TOP_MODULES])
        history = history_of(run)
        request = error.get("request_bytes")
        if history is not None and isinstance(request, int):
            # the allocator's side: the largest free block against the request
            report["allocator"] = explain_oom(history, run.tensors, float(t), request,
                                              error.get("device_free_bytes"))
        return report


def _last_streamed(run: Run) -> float:
    times = [0.0]
    if len(run.samples):
        times.append(float(run.samples.column("t")[-1]))
    if len(run.tensors):
        t_alloc = run.tensors.rows.column("t_alloc")
        t_free = run.tensors.rows.column("t_free")
        times.append(float(t_alloc[-1]))
        if np.isfinite(t_free).any():
            times.append(float(np.nanmax(t_free)))
    return max(times)
