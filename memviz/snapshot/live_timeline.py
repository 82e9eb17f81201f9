"""The bytes live by category over a trace, kept as the trace streams past.

A PyTorch snapshot has no samples: its memory timeline is the running sum of its
allocations and frees. Keeping that sum for every entry would cost as much as the
entries; instead the trace is cut into bins of ``bin_entries`` entries and each bin
keeps its lowest and its highest moment (the total and every category's bytes
then), so the drawn timeline has every peak and every trough the trace had.
"""

from __future__ import annotations

import numpy as np

from ..core.categories import CATEGORIES, SAMPLE_PREFIX

# bins in a whole trace, about: two points each
TARGET_BINS = 10_000


class LiveTimeline:
    def __init__(self, bin_entries: int = 1) -> None:
        self.bin_entries = max(1, bin_entries)
        self.by_category = [0] * len(CATEGORIES)
        self.total = 0
        self._points: list[tuple] = []  # (t_us, index, total, by_category)
        self._in_bin = 0
        self._low: tuple | None = None
        self._high: tuple | None = None
        self._last: tuple | None = None

    def change(self, t_us: float, index: int, category: int, delta: int) -> None:
        """An allocation (delta > 0) or a free (delta < 0) at entry ``index``."""
        self.by_category[category] += delta
        self.total += delta
        total = self.total
        if self._high is None or total > self._high[2]:
            self._high = (t_us, index, total, tuple(self.by_category))
        if self._low is None or total < self._low[2]:
            self._low = (t_us, index, total, tuple(self.by_category))
        self._in_bin += 1
        if self._in_bin >= self.bin_entries:
            self._close_bin()
        self._last = (t_us, index)

    def _close_bin(self, final: bool = False) -> None:
        """``final``: the trace ended; its last state is the last point."""
        if self._low is not None and self._high is not None:
            low, high = sorted((self._low, self._high), key=lambda p: p[1])
            self._points.append(low)
            if high is not low:
                self._points.append(high)
        self._low = self._high = None
        self._in_bin = 0
        if final and self._last is not None and (not self._points
                                                 or self._points[-1][1] != self._last[1]):
            self._points.append((*self._last, self.total, tuple(self.by_category)))

    def columns(self, seconds: np.ndarray, before: int,
                by_category: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The samples: ``seconds`` maps each point's (t_us, index) to the run's clock
        (see ``times``); ``before`` bytes (blocks older than the trace, category
        ``other``) are live throughout. ``by_category``: each point's bytes by
        category where they were worked out afresh (every allocation's category known
        only once the trace has ended), before included."""
        points = self._points
        t = seconds
        if by_category is None:
            by_category = np.array([p[3] for p in points], dtype=np.float64).reshape(
                len(points), len(CATEGORIES))
        by_category[:, CATEGORIES.index("other")] += before
        total = by_category.sum(axis=1) if len(points) else np.zeros(0)
        if not len(points):  # only what existed before: a flat line
            t, total = np.zeros(1), np.full(1, float(before))
            by_category = np.zeros((1, len(CATEGORIES)))
            by_category[0, CATEGORIES.index("other")] = before
        columns = {"t": t, "tracked_total": total, "torch_allocated": total}
        for i, name in enumerate(CATEGORIES):
            columns[SAMPLE_PREFIX + name] = by_category[:, i]
        return columns

    def times(self) -> tuple[np.ndarray, np.ndarray]:
        """Each point's microseconds and entry index, to put on the run's clock (the
        trace has ended: called once, before ``columns``)."""
        self._close_bin(final=True)
        return (np.array([p[0] for p in self._points], dtype=np.float64),
                np.array([p[1] for p in self._points], dtype=np.int64))
