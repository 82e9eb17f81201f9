"""Each set's memory over time, aligned for overlaying: time 0 is its first step.

Loading takes a different time in every set (a LoRA wrap, a quantization), so
raw worker time would misalign the steps; each series starts where its step 0
begins.
"""

from __future__ import annotations

import numpy as np

from ..core.run import Run


def step_zero(run: Run) -> float:
    with run.lock:
        begins = [p.begin for p in run.phases if p.step == 0]
    return min(begins) if begins else 0.0


def aligned(run: Run) -> tuple[np.ndarray, np.ndarray, str]:
    """(t since step 0, bytes, what): the tracked total where tracked, else RSS."""
    with run.lock:
        t = np.array(run.samples.column("t"), dtype=np.float64)
        tracked = np.array(run.samples.column("tracked_total"), dtype=np.float64)
        rss = np.array(run.samples.column("rss"), dtype=np.float64)
    what, y = ("tracked", tracked) if np.isfinite(tracked).any() else ("RSS", rss)
    keep = np.isfinite(y) & (t >= step_zero(run))
    return t[keep] - step_zero(run), y[keep], what
