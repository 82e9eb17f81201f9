"""Questions asked of a run's allocations: what is live at t, where is the peak,
which module holds what. Pure numpy over the TensorLog rows, so the views and the
tests share one answer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .categories import CATEGORIES
from .tensors import TensorLog


@dataclass
class Filter:
    """What the allocation views show. Empty means no restriction."""

    categories: frozenset[int] = frozenset()
    min_bytes: int = 0
    text: str = ""

    def mask(self, log: TensorLog) -> np.ndarray:
        rows = log.rows
        keep = np.ones(len(rows), dtype=bool)
        if self.categories:
            keep &= np.isin(rows.column("category"), list(self.categories))
        if self.min_bytes:
            keep &= rows.column("nbytes") >= self.min_bytes
        if self.text:
            needle = self.text.lower()
            modules = [i for i, m in enumerate(log.strings["module"]) if needle in m.lower()]
            ops = [i for i, o in enumerate(log.strings["op"]) if needle in o.lower()]
            keep &= (np.isin(rows.column("module"), modules) | np.isin(rows.column("op"), ops))
        return keep


def free_times(log: TensorLog, now: float, rows: np.ndarray | None = None) -> np.ndarray:
    """Free times of ``rows`` (all if None), still-live allocations ending at ``now``."""
    t_free = log.rows.column("t_free")
    return np.nan_to_num(t_free if rows is None else t_free[rows], nan=now)


def window_rows(log: TensorLog, x0: float, x1: float,
                keep: np.ndarray | None = None) -> np.ndarray:
    """Rows whose lifetime overlaps [x0, x1]. Allocation times ascend with ids, so
    a binary search cuts off everything allocated after x1 without a full scan."""
    rows = log.rows
    k = int(np.searchsorted(rows.column("t_alloc"), x1, side="right"))
    mask = ~(rows.column("t_free")[:k] < x0)  # NaN (still live) compares False: kept
    if keep is not None:
        mask &= keep[:k]
    return np.flatnonzero(mask)


def level_of_detail(log: TensorLog, window: np.ndarray, bytes_per_pixel: float,
                    seconds_per_pixel: float = 0.0, now: float = 0.0,
                    x0: float = 0.0) -> np.ndarray:
    """Of ``window``, the rows that make a visible mark: at least one pixel tall, or
    at least two pixels long (a long-lived small tensor is a line, and many such
    lines, parameters or optimizer state, make a region). Of the rows narrower than
    a pixel, one per screen cell (the column of its start, the row of its offset) is
    enough: the rest would paint the same pixels. What is left out appears as soon as
    the user zooms in: nothing is dropped from the data, only from this frame."""
    rows = log.rows
    keep = rows.column("nbytes")[window] >= bytes_per_pixel
    if seconds_per_pixel <= 0:
        return window[keep]
    t_alloc = rows.column("t_alloc")[window]
    t_free = rows.column("t_free")[window]
    lifetime = np.where(np.isnan(t_free), now, t_free) - t_alloc
    keep |= lifetime >= 2 * seconds_per_pixel
    narrow = keep & (lifetime < seconds_per_pixel)
    if narrow.any():
        cols = np.floor((t_alloc[narrow] - x0) / seconds_per_pixel).astype(np.int64)
        cells = np.floor(rows.column("offset")[window][narrow] /
                         max(bytes_per_pixel, 1.0)).astype(np.int64)
        _, first = np.unique(cols * (1 << 32) + cells, return_index=True)
        chosen = np.zeros(int(narrow.sum()), dtype=bool)
        chosen[first] = True
        keep[np.flatnonzero(narrow)[~chosen]] = False
    return window[keep]


def top_of(log: TensorLog, window: np.ndarray) -> float:
    """The highest band end (offset + bytes) among ``window``."""
    if not len(window):
        return 0.0
    rows = log.rows
    return float((rows.column("offset")[window] + rows.column("nbytes")[window]).max())


def at_point(log: TensorLog, t: float, y: float, now: float,
             candidates: np.ndarray | None = None) -> int | None:
    """The row whose band covers (t, y), if any."""
    rows = log.rows
    idx = np.arange(len(rows)) if candidates is None else candidates
    t_alloc = rows.column("t_alloc")[idx]
    t_free = free_times(log, now, idx)
    offset = rows.column("offset")[idx]
    nbytes = rows.column("nbytes")[idx]
    hit = (t_alloc <= t) & (t < t_free) & (offset <= y) & (y < offset + nbytes)
    found = idx[hit]
    return int(found[0]) if len(found) else None


def tracked_peak_time(log: TensorLog) -> tuple[float, int]:
    """When the live tracked bytes were highest, and how high."""
    rows = log.rows
    if not len(rows):
        return 0.0, 0
    t_alloc = rows.column("t_alloc")
    t_free = rows.column("t_free")
    nbytes = rows.column("nbytes")
    freed = ~np.isnan(t_free)
    # frees first, then a stable sort by time: at equal times, frees come first (the
    # order within the frees or the allocations of one instant moves neither the
    # highest total nor its time); five times faster than a two-key lexsort
    times = np.concatenate([t_free[freed], t_alloc])
    deltas = np.concatenate([-nbytes[freed], nbytes])
    order = np.argsort(times, kind="stable")
    live = np.cumsum(deltas[order])
    best = int(np.argmax(live))
    return float(times[order[best]]), int(live[best])


@dataclass
class Moment:
    t: float
    rows: np.ndarray  # live rows at t, largest first
    by_category: dict[str, int]
    by_module: list[tuple[str, int]]  # largest first
    total: int


def moment(log: TensorLog, t: float, keep: np.ndarray | None = None) -> Moment:
    idx = log.live_at(t)
    if keep is not None:
        idx = idx[keep[idx]]
    rows = log.rows
    nbytes = rows.column("nbytes")[idx]
    order = np.argsort(-nbytes, kind="stable")
    idx, nbytes = idx[order], nbytes[order]
    cats = rows.column("category")[idx]
    by_cat = np.bincount(cats, weights=nbytes, minlength=len(CATEGORIES))
    # module ids shifted by one: -1 (an imported snapshot knows no module) is bin 0
    mods = rows.column("module")[idx].astype(np.int64) + 1
    by_mod = np.bincount(mods, weights=nbytes) if len(mods) else np.zeros(0)
    top = np.argsort(-by_mod, kind="stable")
    return Moment(
        t=t, rows=idx,
        by_category={c: int(by_cat[i]) for i, c in enumerate(CATEGORIES) if by_cat[i]},
        by_module=[(log.string("module", int(m) - 1) or "(outside any module)", int(by_mod[m]))
                   for m in top if by_mod[m] > 0],
        total=int(nbytes.sum()),
    )


@dataclass
class ModuleStats:
    name: str
    allocated: int          # bytes allocated while the module ran
    activations: int        # of which kept for backward
    peak_forward: int       # its own live bytes at their highest, in forward
    peak_backward: int      # likewise in backward


def module_stats(log: TensorLog, forward_code: int, backward_code: int) -> list[ModuleStats]:
    rows = log.rows
    n = len(rows)
    if not n:
        return []
    # shifted by one: -1 (no module known, as in an imported snapshot) is group 0
    modules = rows.column("module").astype(np.int64) + 1
    nbytes = rows.column("nbytes")
    phase = rows.column("phase")
    category = rows.column("category")
    count = len(log.strings["module"]) + 1
    allocated = np.bincount(modules, weights=nbytes, minlength=count)
    activations = np.bincount(modules[category == CATEGORIES.index("activation")],
                              weights=nbytes[category == CATEGORIES.index("activation")],
                              minlength=count)
    peaks = {}
    for code in (forward_code, backward_code):
        sel = np.flatnonzero(phase == code)
        peaks[code] = _group_peaks(modules[sel], rows.column("t_alloc")[sel],
                                   rows.column("t_free")[sel], nbytes[sel], count)
    return [ModuleStats(log.string("module", m - 1) or "(outside any module)",
                        int(allocated[m]), int(activations[m]), int(peaks[forward_code][m]),
                        int(peaks[backward_code][m]))
            for m in range(count) if allocated[m]]


def _group_peaks(groups: np.ndarray, t_alloc: np.ndarray, t_free: np.ndarray,
                 nbytes: np.ndarray, count: int) -> np.ndarray:
    """Per group, the highest sum of its allocations live at once."""
    out = np.zeros(count, dtype=np.int64)
    if not len(groups):
        return out
    freed = ~np.isnan(t_free)
    g = np.concatenate([groups, groups[freed]])
    t = np.concatenate([t_alloc, t_free[freed]])
    d = np.concatenate([nbytes, -nbytes[freed]])
    order = np.lexsort((d, t, g))
    g, d = g[order], d[order]
    running = np.cumsum(d)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    base = np.repeat(running[starts] - d[starts], np.diff(np.r_[starts, len(g)]))
    within = running - base
    np.maximum.at(out, g, within)
    return out
