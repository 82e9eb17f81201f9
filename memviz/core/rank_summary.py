"""Every rank of a recorded job in its summary, and why the highest rank is highest.

A launched job (``memviz record -- torchrun ...``) is one Run a rank, rank 0's
holding the others in ``run.ranks``. Their figures take the shape a sharded memviz
run's ranks have (``distributed.ranks``, ``distributed.sum``), so the CLI, the
summary and the Ranks view read either alike; ``distributed.highest`` adds which rank
peaks highest over the lowest, and by which categories and modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .categories import CATEGORIES, LABELS
from .run import Run

TOP = 3  # modules named in a rank's difference


def highest_text(highest: dict[str, Any] | None, fmt: Callable[[float], str]) -> str:
    """``distributed.highest`` in words: which rank, by how much, and why."""
    if not highest:
        return ""
    if not highest["bytes"]:
        return "Every rank peaks alike."
    def signed(n: float) -> str:
        return ("+" if n >= 0 else "−") + fmt(abs(n))

    why = ", ".join(f"{LABELS.get(c, c)} {signed(b)}" for c, b in highest["categories"].items())
    mods = ", ".join(f"{name} {signed(b)}" for name, b in highest["modules"])
    return (f"rank {highest['rank']} peaks highest, {signed(highest['bytes'])} over rank "
            f"{highest['over_rank']}: {why}"
            + (f" (modules, each at its own highest: {mods})" if mods else ""))


def with_sum(ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-rank figures and their sum (what the machine as a whole held)."""
    tracked = [r["tracking"] for r in ranks if r.get("tracking")]
    total: dict[str, Any] = {"tracked_bytes": sum(t["tracked_bytes"] or 0 for t in tracked)}
    if tracked and all(t.get("peak_by_category") for t in tracked):
        total["peak_by_category"] = {c: sum(t["peak_by_category"].get(c, 0) for t in tracked)
                                     for c in tracked[0]["peak_by_category"]}
    total["peak_rss_bytes"] = sum(max((s["peak_rss_bytes"] or 0 for s in r["steps"]),
                                      default=0) for r in ranks)
    return {"ranks": ranks, "sum": total}


def recorded_ranks(run: Run) -> dict[str, Any] | None:
    """The ranks of a recorded job, each from its own stream; None for one process."""
    from .summary import tracked_peaks

    with run.lock:
        others = [run.ranks[r] for r in sorted(run.ranks)]
    if not others:
        return None
    ranks = []
    for rank_run in (run, *others):
        tracked = tracked_peaks(rank_run)
        ranks.append({
            "rank": rank_run.rank,
            "tracking": {"tracked_bytes": tracked["tracked_bytes"], "peak_t": tracked["t"],
                         "peak_by_category": tracked["peak_by_category"]}
            if tracked["tracked_bytes"] is not None else None,
            "steps": [{"step": s.step, "peak_rss_bytes": s.peak_rss_bytes,
                       "tracked_peak_bytes": s.tracked_peak_bytes} for s in rank_run.steps],
            "state": rank_run.state,
        })
    figures = with_sum(ranks)
    figures["world_size"] = (run.environment.get("distributed") or {}).get(
        "world_size", len(ranks))
    figures["highest"] = highest_rank(ranks, (run, *others))
    return figures


def with_highest(distributed: dict[str, Any] | None) -> dict[str, Any] | None:
    """A sharded run's ranks (measured or simulated by memviz's runner) with ``highest``
    from their categories (their tensors are not all here: no modules)."""
    if not distributed or not distributed.get("ranks") or "highest" in distributed:
        return distributed
    return {**distributed, "highest": highest_rank(distributed["ranks"])}


def highest_rank(ranks: list[dict],
                 runs: tuple[Run, ...] | None = None) -> dict[str, Any] | None:
    """The rank that peaks highest against the lowest: by how much, in which categories
    at their peaks and, given each rank's Run, in which modules (largest first)."""
    tracked = [(r["tracking"]["tracked_bytes"], i) for i, r in enumerate(ranks)
               if r["tracking"] and r["tracking"]["tracked_bytes"] is not None]
    if len(tracked) < 2:
        return None
    (high, hi), (low, lo) = max(tracked), min(tracked)
    if high == low:
        return {"rank": ranks[hi]["rank"], "over_rank": ranks[lo]["rank"], "bytes": 0,
                "categories": {}, "modules": []}
    hi_cats = ranks[hi]["tracking"]["peak_by_category"] or {}
    lo_cats = ranks[lo]["tracking"]["peak_by_category"] or {}
    categories = {c: hi_cats.get(c, 0) - lo_cats.get(c, 0) for c in CATEGORIES
                  if hi_cats.get(c, 0) != lo_cats.get(c, 0)}
    return {"rank": ranks[hi]["rank"], "over_rank": ranks[lo]["rank"], "bytes": high - low,
            "categories": dict(sorted(categories.items(), key=lambda kv: -abs(kv[1]))),
            "modules": _module_differences(runs[hi], runs[lo]) if runs else []}


def _module_differences(high: Run, low: Run) -> list[list]:
    """Modules whose own highest live bytes differ between two ranks (largest first).
    Each module's own high, not its bytes at each rank's peak: two ranks reach their
    peaks at different ops, and a difference of moments is not a difference of ranks."""
    hi, lo = module_highs(high), module_highs(low)
    differences = [(name, hi.get(name, 0) - lo.get(name, 0)) for name in {*hi, *lo}]
    ranked = sorted((d for d in differences if d[1]), key=lambda d: (-abs(d[1]), d[0]))
    return [[name, change] for name, change in ranked[:TOP]]  # lists, as JSON reads back


def module_highs(run: Run) -> dict[str, int]:
    """Each module's highest bytes live at once (its own allocations; frees first at a
    tie), in one sort of every allocation and free."""
    log = run.tensors
    if not len(log):
        return {}
    rows = log.rows
    t_alloc, t_free = rows.column("t_alloc"), rows.column("t_free")
    nbytes = rows.column("nbytes").astype(np.int64)
    module = rows.column("module").astype(np.int64)
    freed = ~np.isnan(t_free)
    times = np.concatenate([t_alloc, t_free[freed]])
    change = np.concatenate([nbytes, -nbytes[freed]])
    owner = np.concatenate([module, module[freed]])
    order = np.lexsort((change, times, owner))
    owner, change = owner[order], change[order]
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    running = np.cumsum(change)
    before = np.r_[0, running[:-1]][starts]  # what earlier modules added up to
    level = running - np.repeat(before, np.diff(np.r_[starts, len(owner)]))
    highs = np.maximum.reduceat(level, starts)
    return {(log.string("module", int(owner[s])) if owner[s] >= 0 else "")
            or "(outside any module)": int(h) for s, h in zip(starts, highs, strict=True)
            if h > 0}
