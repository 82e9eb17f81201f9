"""Per-module figures kept up to date as tensor events arrive, so the Modules view
shows a live run at any length for the cost of what arrived.

- bytes each module allocated, by category (a retag moves an allocation's bytes
  from one category to another: the latest category counts, as in the rows);
- for forward and backward, each module's own live bytes and their highest (its
  peak): events are taken in the order they happened.

Module ids are the tensor log's string ids shifted by one: -1 (no module known,
as in an imported snapshot) is group 0.
"""

from __future__ import annotations

import numpy as np

from .categories import CATEGORIES

FORWARD, BACKWARD = 2, 3  # the tracker's phase codes
ALLOC, FREE, RETAG = 0, 1, 2


class _Grown:
    """A 2-D int64 table whose first dimension grows to fit any index."""

    def __init__(self, width: int) -> None:
        self.data = np.zeros((16, width), dtype=np.int64)

    def fit(self, size: int) -> None:
        if size > len(self.data):
            grown = np.zeros((max(size, 2 * len(self.data)), self.data.shape[1]), np.int64)
            grown[: len(self.data)] = self.data
            self.data = grown


class ModuleTotals:
    def __init__(self) -> None:
        self.by_category = _Grown(len(CATEGORIES))  # [module + 1, category] bytes allocated
        self.live = _Grown(2)  # [module + 1, forward/backward] bytes live now
        self.peak = _Grown(2)  # their highest so far
        self.revision = 0

    def apply(self, kind: np.ndarray, module: np.ndarray, phase: np.ndarray,
              nbytes: np.ndarray, category: np.ndarray, old_category: np.ndarray) -> None:
        """One batch of events, each with its allocation's module, phase (at allocation),
        bytes, and the category it has now and had before the event (for a retag)."""
        if not len(kind):
            return
        group = module.astype(np.int64) + 1
        top = int(group.max()) + 1
        for table in (self.by_category, self.live, self.peak):
            table.fit(top)
        nbytes = nbytes.astype(np.int64)
        alloc = kind == ALLOC
        np.add.at(self.by_category.data, (group[alloc], category[alloc].astype(np.int64)),
                  nbytes[alloc])
        retag = kind == RETAG
        if retag.any():
            np.add.at(self.by_category.data, (group[retag], old_category[retag].astype(np.int64)),
                      -nbytes[retag])
            np.add.at(self.by_category.data, (group[retag], category[retag].astype(np.int64)),
                      nbytes[retag])
        for column, code in ((0, FORWARD), (1, BACKWARD)):
            mine = ((kind == ALLOC) | (kind == FREE)) & (phase == code)
            if not mine.any():
                continue
            g = group[mine]
            delta = np.where(kind[mine] == ALLOC, nbytes[mine], -nbytes[mine])
            order = np.argsort(g, kind="stable")  # each module's events, still in time order
            g, delta = g[order], delta[order]
            starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
            running = np.cumsum(delta)
            base = np.repeat(running[starts] - delta[starts], np.diff(np.r_[starts, len(g)]))
            live = self.live.data[g, column] + (running - base)
            np.maximum.at(self.peak.data[:, column], g, live)
            ends = np.r_[starts[1:], len(g)] - 1
            self.live.data[g[ends], column] = live[ends]
        self.revision += 1

    def allocated(self, module: int) -> int:
        row = module + 1
        return int(self.by_category.data[row].sum()) if row < len(self.by_category.data) else 0

    def figures(self, count: int) -> dict[str, np.ndarray]:
        """Arrays indexed by module id + 1 (``count`` modules): allocated, activations,
        peak_forward, peak_backward."""
        for table in (self.by_category, self.live, self.peak):
            table.fit(count + 1)
        n = count + 1
        return {"allocated": self.by_category.data[:n].sum(axis=1),
                "activations": self.by_category.data[:n, CATEGORIES.index("activation")],
                "peak_forward": self.peak.data[:n, 0], "peak_backward": self.peak.data[:n, 1]}
