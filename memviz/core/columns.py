"""Growable columnar numpy buffers: amortised O(1) appends, zero-copy reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


def _fill(dtype: np.dtype) -> float | int:
    return np.nan if dtype.kind == "f" else -1


class Columns:
    """A table of equally long columns that grows by doubling.

    ``names`` is either a list (every column float64, missing values NaN) or a
    mapping from name to dtype (integer columns fill missing values with -1).
    """

    def __init__(self, names: Iterable[str] | Mapping[str, type], capacity: int = 4096) -> None:
        if isinstance(names, Mapping):
            self.dtypes = {n: np.dtype(d) for n, d in names.items()}
        else:
            self.dtypes = {n: np.dtype(np.float64) for n in names}
        self.names = tuple(self.dtypes)
        self._data = {n: np.full(capacity, _fill(d), dtype=d) for n, d in self.dtypes.items()}
        self._len = 0
        self._has_data: set[str] = set()  # columns with at least one finite value
        self._has_gaps: set[str] = set()  # columns with at least one missing value

    def __len__(self) -> int:
        return self._len

    def reserve(self, extra: int, exact: bool = False) -> None:
        """Room for ``extra`` more rows: by doubling (appends), or ``exact`` (a count
        known in advance, so a long table is not made twice too big)."""
        need = self._len + extra
        cap = len(next(iter(self._data.values())))
        if need <= cap:
            return
        if exact:
            cap = need
        while cap < need:
            cap *= 2
        for name, old in self._data.items():
            new = np.full(cap, _fill(old.dtype), dtype=old.dtype)
            new[: self._len] = old[: self._len]
            self._data[name] = new

    def append(self, batch: Mapping[str, np.ndarray]) -> None:
        """Append a batch; columns absent from ``batch`` are filled as missing."""
        n = len(next(iter(batch.values())))
        self.reserve(n)
        for name in self.names:
            col = batch.get(name)
            if col is not None:
                self._data[name][self._len : self._len + n] = col
                if self.dtypes[name].kind == "f":
                    finite = np.isfinite(col)
                    if finite.any():
                        self._has_data.add(name)
                    if not finite.all():
                        self._has_gaps.add(name)
                elif n:
                    self._has_data.add(name)
            else:
                self._has_gaps.add(name)
        self._len += n

    def column(self, name: str) -> np.ndarray:
        """A read-only view of the filled part of one column."""
        view = self._data[name][: self._len]
        view.flags.writeable = False
        return view

    def writable(self, name: str) -> np.ndarray:
        """A writable view, for in-place updates of existing rows (caller holds the lock)."""
        return self._data[name][: self._len]

    def has_data(self, name: str) -> bool:
        """Whether the column holds any finite value (tracked on append, O(1))."""
        return name in self._has_data

    def has_gaps(self, name: str) -> bool:
        """Whether the column holds any missing value (tracked on append, O(1))."""
        return name in self._has_gaps
