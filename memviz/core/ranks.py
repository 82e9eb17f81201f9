"""Every rank of a sharded run on one clock, and what the machine held in all.

Each rank's worker stamps times on its own clock from its own start; its
``t0_wall`` places that start on the wall clock, so rank r's time t is
``t + t0_wall[r] - t0_wall[0]`` on rank 0's axis. The sum is taken on the
union of all sample times, each rank's series held at its last sample (a rank
that has not started, or has ended, holds nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .run import Run


@dataclass
class RankSeries:
    label: str
    t: np.ndarray
    values: np.ndarray


def all_ranks(run: Run) -> list[Run]:
    """Rank 0 (``run``) and every rank that streamed to it, in rank order."""
    with run.lock:
        return [run, *(run.ranks[r] for r in sorted(run.ranks))]


def column_for(runs: list[Run]) -> str:
    """The tracked total when every rank tracked tensors, else RSS."""
    def has(run: Run, name: str) -> bool:
        with run.lock:
            return len(run.samples) > 0 and bool(np.isfinite(run.samples.column(name)).any())

    return "tracked_total" if all(has(r, "tracked_total") for r in runs) else "rss"


def rank_series(runs: list[Run], column: str) -> list[RankSeries]:
    base = runs[0].t0_wall
    out = []
    for run in runs:
        with run.lock:
            t = np.array(run.samples.column("t"), dtype=np.float64)
            y = np.array(run.samples.column(column), dtype=np.float64)
        keep = np.isfinite(y)
        out.append(RankSeries(f"rank {run.rank}", t[keep] + (run.t0_wall - base), y[keep]))
    return out


def summed(series: list[RankSeries]) -> RankSeries:
    """Σ over ranks at every moment any rank sampled (step-hold, zero outside a rank's run)."""
    present = [s for s in series if len(s.t)]
    if not present:
        return RankSeries("sum", np.zeros(0), np.zeros(0))
    grid = np.unique(np.concatenate([s.t for s in present]))
    total = np.zeros_like(grid)
    for s in present:
        at = np.searchsorted(s.t, grid, side="right") - 1
        inside = (at >= 0) & (grid <= s.t[-1])
        total[inside] += s.values[at[inside]]
    return RankSeries("sum", grid, total)


@dataclass
class RankRow:
    label: str
    peak_bytes: float
    peak_rss_bytes: float
    optimizer_state_bytes: float
    parameter_bytes: float
    steps: int


def rank_table(runs: list[Run]) -> list[RankRow]:
    """Per rank: its peak of the shown column, RSS, optimizer state and parameters;
    then the sum row, whose peak is the peak of the summed series (what was held at
    once, at most the sum of the ranks' peaks)."""
    column = column_for(runs)
    rows = []
    for run in runs:
        with run.lock:
            rows.append(RankRow(
                f"rank {run.rank}", _exact_peak(run, column), _peak(run, "rss"),
                _peak(run, "cat_optimizer_state"), _peak(run, "cat_parameter"),
                len(run.steps)))
    rows.append(RankRow(
        "sum (at once)", _max(summed(rank_series(runs, column)).values),
        _max(summed(rank_series(runs, "rss")).values),
        _max(summed(rank_series(runs, "cat_optimizer_state")).values),
        _max(summed(rank_series(runs, "cat_parameter")).values),
        min(r.steps for r in rows)))
    return rows


def _exact_peak(run: Run, column: str) -> float:
    """The tracker's own peak where it has one (samples, at 20 a second, miss the
    instant of an optimizer step's peak), else the samples' highest."""
    tracked = ((run.worker_summary or {}).get("tracking") or {}).get("tracked_bytes")
    sampled = _peak(run, column)
    if column != "tracked_total" or tracked is None:
        return sampled
    return float(tracked) if np.isnan(sampled) else max(float(tracked), sampled)


def _peak(run: Run, column: str) -> float:
    return _max(run.samples.column(column)) if len(run.samples) else float("nan")


def _max(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if len(finite) else float("nan")


def simulated_rank_table(run: Run) -> list[RankRow]:
    """A simulated sharded run's ranks, from its summary: they ran one after another in
    one process, so each has its tracked peak and the categories at it, no timeline of
    its own, and the sum row adds their peaks (what the ranks hold at most together)."""
    distributed = (run.worker_summary or {}).get("distributed") or {}
    rows = []
    for figures in distributed.get("ranks", []):
        tracking = figures.get("tracking") or {}
        cats = tracking.get("peak_by_category") or {}
        rows.append(RankRow(f"rank {figures['rank']}",
                            float(tracking.get("tracked_bytes") or 0), float("nan"),
                            float(cats.get("optimizer_state", 0)),
                            float(cats.get("parameter", 0) + cats.get("parameter_frozen", 0)),
                            len(figures.get("steps", []))))
    if rows:
        rows.append(RankRow("sum of peaks", sum(r.peak_bytes for r in rows), float("nan"),
                            sum(r.optimizer_state_bytes for r in rows),
                            sum(r.parameter_bytes for r in rows), min(r.steps for r in rows)))
    return rows


def rank_of(run: Run, rank: int | None) -> Run:
    """Rank ``rank`` of the job ``run`` is rank 0 of (``run`` itself for None or 0)."""
    if not rank:
        return run
    found = run.ranks.get(rank)
    if found is None:
        held = ", ".join(str(r) for r in sorted({run.rank, *run.ranks}))
        raise ValueError(f"it holds no rank {rank} (ranks held: {held})")
    return found
