"""Each step's tracked peak within each of its phases (forward, backward, optimizer).

From the allocations themselves: every allocation and free in time order (frees
first at a tie, as the tracker counts them), the live total after each, and for a
phase the highest total from its beginning to its end. One sort for the whole run;
a window is two binary searches and one maximum. A run without tracked tensors
has none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .run import Phase
from .tensors import TensorLog

PHASES = ("forward", "backward", "optimizer")


@dataclass
class LiveTotals:
    """The live tracked bytes after every event of a run, in time order."""

    times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    totals: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def of(cls, log: TensorLog) -> LiveTotals:
        rows = log.rows
        if not len(rows):
            return cls()
        t_alloc, t_free = rows.column("t_alloc"), rows.column("t_free")
        nbytes = rows.column("nbytes").astype(np.int64)
        freed = ~np.isnan(t_free)
        times = np.concatenate([t_alloc, t_free[freed]])
        deltas = np.concatenate([nbytes, -nbytes[freed]])
        order = np.lexsort((deltas, times))
        return cls(times[order], np.cumsum(deltas[order]))

    def highest(self, begin: float, end: float) -> int | None:
        """The most bytes live at once from ``begin`` to ``end`` (what was live as the
        window opened counts); None without events."""
        if not len(self.times) or not np.isfinite(begin):
            return None
        first = int(np.searchsorted(self.times, begin, side="right"))
        last = int(np.searchsorted(self.times, end if np.isfinite(end) else np.inf,
                                   side="right"))
        at_begin = int(self.totals[first - 1]) if first else 0
        inside = self.totals[first:last]
        return max(at_begin, int(inside.max())) if len(inside) else at_begin


def phase_peaks(phases: Iterable[Phase], totals: LiveTotals) -> dict[tuple[int, str], int]:
    """(step, phase) -> the tracked peak in it; a phase run several times in a step
    (gradient accumulation's micro-batches) gives its highest."""
    peaks: dict[tuple[int, str], int] = {}
    for phase in phases:
        if phase.name not in PHASES:
            continue
        value = totals.highest(phase.begin, phase.end)
        if value is not None:
            key = (phase.step, phase.name)
            peaks[key] = max(peaks.get(key, 0), value)
    return peaks
