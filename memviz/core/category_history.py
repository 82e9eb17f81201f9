"""A retag rewrites the past: an allocation's category is its category for its whole
life, in the timeline too.

The tracker learns what a storage is only later than it allocates it (AdamW's state
is made inside the first ``optimizer.step()`` and known as state when it returns; a
recorded program's weights are found after they are loaded). The samples streamed
meanwhile counted those bytes under the category they had then. Each retag moves
the allocation's bytes, in every sample from its allocation to the retag, from the
old category to the new one; a sample that arrives after the retag but was taken
before it is moved as it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .categories import CATEGORIES, SAMPLE_PREFIX
from .columns import Columns

_COLUMNS = [SAMPLE_PREFIX + c for c in CATEGORIES]


@dataclass
class Retags:
    """A batch of retags: each allocation's time, the retag's time, its bytes, and the
    category codes before and after."""

    t_alloc: np.ndarray
    t_retag: np.ndarray
    nbytes: np.ndarray
    old: np.ndarray
    new: np.ndarray


class CategoryHistory:
    def __init__(self) -> None:
        self._waiting: list[Retags] = []  # retags later than the last sample

    def retagged(self, samples: Columns, retags: Retags) -> None:
        """Move the bytes of ``retags`` in the samples taken so far."""
        self._move(samples, retags, 0)
        self._waiting.append(retags)
        self._forget_settled(samples)

    def sampled(self, samples: Columns, first_new_row: int) -> None:
        """Samples from ``first_new_row`` on just arrived: move what retags before
        them say."""
        for retags in self._waiting:
            self._move(samples, retags, first_new_row)
        self._forget_settled(samples)

    def _forget_settled(self, samples: Columns) -> None:
        """Samples arrive in time order: a retag before the last sample's time has
        no later sample to move."""
        if not len(samples) or not self._waiting:
            return
        last = float(samples.column("t")[-1])
        self._waiting = [r for r in self._waiting if (r.t_retag > last).any()]

    @staticmethod
    def _move(samples: Columns, retags: Retags, first_row: int) -> None:
        if len(samples) <= first_row:
            return
        t = samples.column("t")[first_row:]
        lo = np.searchsorted(t, retags.t_alloc, side="left") + first_row
        hi = np.searchsorted(t, retags.t_retag, side="left") + first_row
        for i in np.flatnonzero(hi > lo):
            rows = slice(int(lo[i]), int(hi[i]))
            nbytes = float(retags.nbytes[i])
            samples.writable(_COLUMNS[int(retags.old[i])])[rows] -= nbytes
            samples.writable(_COLUMNS[int(retags.new[i])])[rows] += nbytes
