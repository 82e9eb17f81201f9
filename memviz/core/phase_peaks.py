"""Each step's tracked peak within each of its phases (forward, backward, optimizer).

From the allocations themselves: every allocation and free in time order (frees
first at a tie, as the tracker counts them), the live total after each, and for a
phase the highest total from its beginning to its end. A whole run at once (a file
opened): one sort of every event, then two binary searches a phase
(``LiveTotals``). A few new steps of a live run: what was live as each phase began,
and a sort of the events inside it only (``window_peak``), so a step's end never
sorts the whole run again. A run without tracked tensors has none.
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


def window_peak(log: TensorLog, begin: float, end: float) -> int | None:
    """The most bytes live at once from ``begin`` to ``end``, without sorting the run."""
    rows = log.rows
    if not len(rows) or not np.isfinite(begin):
        return None
    end = end if np.isfinite(end) else np.inf
    t_alloc, t_free = rows.column("t_alloc"), rows.column("t_free")
    nbytes = rows.column("nbytes").astype(np.int64)
    at_begin = int(nbytes[(t_alloc <= begin) & ~(t_free <= begin)].sum())
    made = (t_alloc > begin) & (t_alloc <= end)
    gone = (t_free > begin) & (t_free <= end)
    times = np.concatenate([t_alloc[made], t_free[gone]])
    deltas = np.concatenate([nbytes[made], -nbytes[gone]])
    if not len(times):
        return at_begin
    order = np.lexsort((deltas, times))
    return max(at_begin, at_begin + int(np.cumsum(deltas[order]).max()))


def phase_peaks(phases: Iterable[Phase], totals: LiveTotals | TensorLog
                ) -> dict[tuple[int, str], int]:
    """(step, phase) -> the tracked peak in it, from a whole run's ``LiveTotals`` or,
    for a few phases, from the log itself; a phase run several times in a step
    (gradient accumulation's micro-batches) gives its highest."""
    peaks: dict[tuple[int, str], int] = {}
    for phase in phases:
        if phase.name not in PHASES:
            continue
        value = (totals.highest(phase.begin, phase.end) if isinstance(totals, LiveTotals)
                 else window_peak(totals, phase.begin, phase.end))
        if value is not None:
            key = (phase.step, phase.name)
            peaks[key] = max(peaks.get(key, 0), value)
    return peaks
