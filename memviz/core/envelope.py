"""A series that only grows, drawable over any time range at a few points per pixel.

Level 0 holds every sample; level k holds, for each run of ``FACTOR**k`` samples, its
first time and its smallest and largest value. Appending costs what arrived
(amortised O(1) a sample); drawing a range takes the finest level that gives at
most ``max_points`` and returns its minima and maxima interleaved, so every peak
and trough survives whatever the run's length. An hour at 20 Hz draws as fast as
a minute.
"""

from __future__ import annotations

import numpy as np

FACTOR = 4


class Growable:
    """A float64 array that grows by doubling; ``view()`` is the filled part."""

    def __init__(self, capacity: int = 1024) -> None:
        self.data = np.empty(capacity)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        need = self.size + len(values)
        if need > len(self.data):
            grown = np.empty(max(need, 2 * len(self.data)))
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size:need] = values
        self.size = need

    def view(self) -> np.ndarray:
        return self.data[: self.size]


class Envelope:
    def __init__(self) -> None:
        # level k: (first time, minimum, maximum) of each full bucket of FACTOR**k samples
        self.levels: list[tuple[Growable, Growable, Growable]] = [
            (Growable(), Growable(), Growable())]

    def __len__(self) -> int:
        return self.levels[0][0].size

    def append(self, t: np.ndarray, values: np.ndarray) -> None:
        t = np.asarray(t, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        if not len(t):
            return
        times, lows, highs = self.levels[0]
        times.extend(t)
        lows.extend(values)
        highs.extend(values)
        level = 0
        while True:  # fold every newly completed bucket into the level above
            below_t, below_lo, below_hi = self.levels[level]
            if level + 1 == len(self.levels):
                if below_t.size < FACTOR:
                    return
                self.levels.append((Growable(), Growable(), Growable()))
            above_t, above_lo, above_hi = self.levels[level + 1]
            done = above_t.size * FACTOR
            full = (below_t.size - done) // FACTOR
            if not full:
                return
            stop = done + full * FACTOR
            chunk = slice(done, stop)
            lo = below_lo.view()[chunk].reshape(full, FACTOR)
            hi = below_hi.view()[chunk].reshape(full, FACTOR)
            with np.errstate(invalid="ignore"):
                above_t.extend(below_t.view()[chunk][::FACTOR])
                above_lo.extend(_nan_reduce(np.fmin, lo))
                above_hi.extend(_nan_reduce(np.fmax, hi))
            level += 1

    def query(self, t0: float, t1: float, max_points: int,
              upper_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Times and values covering [t0, t1] (one sample beyond each end), at most about
        ``max_points``; minima and maxima interleaved (only maxima with ``upper_only``:
        the top of a filled area)."""
        raw_t = self.levels[0][0].view()
        if not len(raw_t):
            return np.empty(0), np.empty(0)
        first = max(int(np.searchsorted(raw_t, t0, side="left")) - 1, 0)
        last = min(int(np.searchsorted(raw_t, t1, side="right")) + 1, len(raw_t))
        level = 0
        per_point = 1 if upper_only else 2
        while level + 1 < len(self.levels) and \
                (last - first) * per_point > max_points * FACTOR ** level:
            level += 1
        if level == 0:
            return raw_t[first:last], self.levels[0][2].view()[first:last]
        scale = FACTOR ** level
        times, lows, highs = (g.view() for g in self.levels[level])
        b0, b1 = first // scale, min(last // scale + 1, len(times))
        tail = b1 * scale  # samples after the last full bucket come from level 0
        t_parts = [times[b0:b1]]
        hi_parts = [highs[b0:b1]]
        lo_parts = [lows[b0:b1]]
        if tail < last:
            t_parts.append(raw_t[tail:last])
            hi_parts.append(self.levels[0][2].view()[tail:last])
            lo_parts.append(self.levels[0][1].view()[tail:last])
        t_out, hi_out = np.concatenate(t_parts), np.concatenate(hi_parts)
        if upper_only:
            return t_out, hi_out
        lo_out = np.concatenate(lo_parts)
        return np.repeat(t_out, 2), np.column_stack([lo_out, hi_out]).ravel()


def _nan_reduce(ufunc: np.ufunc, blocks: np.ndarray) -> np.ndarray:
    return ufunc.reduce(blocks, axis=1)
