"""Growable columnar numpy buffers: amortised O(1) appends, zero-copy reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


class Columns:
    """A table of equally long float64 columns that grows by doubling."""

    def __init__(self, names: Iterable[str], capacity: int = 4096) -> None:
        self.names = tuple(names)
        self._data = {n: np.full(capacity, np.nan) for n in self.names}
        self._len = 0
        self._has_data: set[str] = set()  # columns with at least one finite value
        self._has_gaps: set[str] = set()  # columns with at least one NaN

    def __len__(self) -> int:
        return self._len

    def _reserve(self, extra: int) -> None:
        need = self._len + extra
        cap = len(next(iter(self._data.values())))
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        for name, old in self._data.items():
            new = np.full(cap, np.nan)
            new[: self._len] = old[: self._len]
            self._data[name] = new

    def append(self, batch: Mapping[str, np.ndarray]) -> None:
        """Append a batch; columns absent from ``batch`` are filled with NaN."""
        n = len(next(iter(batch.values())))
        self._reserve(n)
        for name in self.names:
            col = batch.get(name)
            if col is not None:
                self._data[name][self._len : self._len + n] = col
                finite = np.isfinite(col)
                if finite.any():
                    self._has_data.add(name)
                if not finite.all():
                    self._has_gaps.add(name)
            else:
                self._has_gaps.add(name)
        self._len += n

    def column(self, name: str) -> np.ndarray:
        """A read-only view of the filled part of one column."""
        view = self._data[name][: self._len]
        view.flags.writeable = False
        return view

    def has_data(self, name: str) -> bool:
        """Whether the column holds any finite value (tracked on append, O(1))."""
        return name in self._has_data

    def has_gaps(self, name: str) -> bool:
        """Whether the column holds any NaN (tracked on append, O(1))."""
        return name in self._has_gaps
