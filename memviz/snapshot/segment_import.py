"""A PyTorch snapshot's segments over its trace, as a ``SegmentHistory`` (measured).

The snapshot lists the segments held when it was taken; its trace says which were
reserved (``segment_alloc``, ``segment_map``) and released (``segment_free``,
``segment_unmap``) while it recorded. Segments released before the end are known
only from the trace; those held at the end and never traced were reserved before
recording began. Each allocation lies in the segment whose addresses hold it at
the time it was made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from ..core.segments import SegmentHistory

_MADE = ("segment_alloc", "segment_map")
SMALL_SEGMENT = 2 << 20  # the small pool's segments
# allocations in no segment the first look finds are looked for in every segment, up
# to this many comparisons (beyond it they stay outside any known segment)
FALLBACK_WORK = 50_000_000


Event = tuple[str, int, int, float, int]  # action, address, size, microseconds, index


def measured_history(segments: list[dict], events: Iterable[Event],
                     seconds: Callable[[float, int], float], addr: np.ndarray,
                     nbytes: np.ndarray, t_alloc: np.ndarray, t_free: np.ndarray,
                     category: np.ndarray) -> SegmentHistory:
    """``seconds(t_us, index)``: an entry's time on the run's clock."""
    found: list[tuple[int, int, float, float, bool]] = []  # base, size, made, freed, small
    open_at: dict[int, int] = {}
    for action, address, nb, t_us, index in events:
        t = float(seconds(t_us, index))
        if action in _MADE:
            open_at[address] = len(found)
            found.append((address, nb, t, np.inf, nb <= SMALL_SEGMENT))
        elif address in open_at:
            i = open_at.pop(address)
            found[i] = (*found[i][:3], t, found[i][4])
        else:  # reserved before recording began
            found.append((address, nb, 0.0, t, nb <= SMALL_SEGMENT))
    for seg in segments:
        address = int(seg.get("address", 0))
        if address not in open_at:  # not traced from its reservation
            found.append((address, int(seg.get("total_size", 0)), 0.0, np.inf,
                          seg.get("segment_type") == "small"))
    base = [f[0] for f in found]
    size = [f[1] for f in found]
    made = [f[2] for f in found]
    freed = [f[3] for f in found]
    small = [f[4] for f in found]
    bases = np.array(base, np.int64)
    sizes = np.array(size, np.int64)
    mades, freeds = np.array(made, np.float64), np.array(freed, np.float64)
    n = len(addr)
    block_segment = np.full(n, -1, np.int64)
    order = np.lexsort((mades, bases))  # by address, then time
    sorted_bases = bases[order]
    guess = np.searchsorted(sorted_bases, addr, side="right") - 1
    ok = guess >= 0
    candidate = order[np.clip(guess, 0, None)] if len(order) else np.zeros(n, np.int64)
    if len(order):
        ok &= (addr < bases[candidate] + sizes[candidate]) & (mades[candidate] <= t_alloc) \
            & (freeds[candidate] > t_alloc)
        block_segment[ok] = candidate[ok]
    bad = np.flatnonzero(~ok)
    if len(bad) and len(bases) and len(bad) * len(bases) <= FALLBACK_WORK:
        for segment in range(len(bases)):  # an address whose segment was made again
            inside = bad[(bases[segment] <= addr[bad]) & (addr[bad] < bases[segment]
                                                          + sizes[segment])
                         & (mades[segment] <= t_alloc[bad]) & (freeds[segment] > t_alloc[bad])]
            block_segment[inside] = segment
    offset = np.where(block_segment >= 0, addr - bases[np.clip(block_segment, 0, None)]
                      if len(bases) else 0, 0)
    return SegmentHistory("measured", sizes, mades, freeds, np.array(small, bool),
                          block_segment, offset.astype(np.int64), nbytes.astype(np.int64),
                          t_alloc, t_free, category)
