"""The run summary: what `memviz run --summary` writes and the step table shows."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from ..version import __version__
from . import cuda_model
from .analysis import moment, tracked_peak_time
from .categories import CATEGORIES
from .columns import Columns
from .oom import last_moment
from .run import Run


def _max_int(values: np.ndarray) -> int | None:
    finite = values[np.isfinite(values)]
    return int(finite.max()) if finite.size else None


def peak_rss_bytes(run: Run) -> int | None:
    """The highest RSS seen: the kernel's exact high-water marks and step peaks."""
    candidates = [
        _max_int(run.samples.column("peak_rss")),
        _max_int(run.samples.column("rss")),
        *(s.peak_rss_bytes for s in run.steps),
    ]
    known = [c for c in candidates if c is not None]
    return max(known) if known else None


def peak_gpu_bytes(run: Run) -> int | None:
    """The highest GPU memory of this process (NVML, torch reserved or step peaks)."""
    candidates = [
        _max_int(run.samples.column("gpu_process_used")),
        _max_int(run.samples.column("torch_reserved")),
        *(s.peak_gpu_bytes for s in run.steps if s.peak_gpu_bytes is not None),
    ]
    known = [c for c in candidates if c is not None]
    return max(known) if known else None


def tracked_peaks(run: Run) -> dict[str, Any]:
    """The tracker's own peak figures, from the worker's final summary; for a run no
    worker made (an imported snapshot), from its allocations."""
    tracking = (run.worker_summary or {}).get("tracking") or {}
    if not tracking and run.spec.imported and len(run.tensors):
        return _peaks_of_allocations(run)
    return {
        "tracked_bytes": tracking.get("tracked_bytes"),
        "t": tracking.get("peak_t"),
        "peak_by_category": tracking.get("peak_by_category"),
        "max_by_category": tracking.get("max_by_category"),
        "allocations": tracking.get("allocations"),
    }


def _peaks_of_allocations(run: Run) -> dict[str, Any]:
    t, peak = tracked_peak_time(run.tensors)
    at = moment(run.tensors, t)
    rows = run.tensors.rows
    category = rows.column("category")
    return {"tracked_bytes": int(peak), "t": float(t),
            "peak_by_category": {c: int(at.by_category.get(c, 0)) for c in CATEGORIES},
            "max_by_category": {c: _highest_live(rows, category == code)
                                for code, c in enumerate(CATEGORIES)},
            "allocations": len(run.tensors)}


def _highest_live(rows: Columns, chosen: np.ndarray) -> int:
    """The most bytes of the ``chosen`` allocations live at once (frees first at a tie)."""
    t_alloc, t_free = rows.column("t_alloc")[chosen], rows.column("t_free")[chosen]
    nbytes = rows.column("nbytes")[chosen].astype(np.int64)
    freed = ~np.isnan(t_free)
    times = np.concatenate([t_alloc, t_free[freed]])
    change = np.concatenate([nbytes, -nbytes[freed]])
    order = np.lexsort((change, times))
    return int(max(np.cumsum(change[order]).max(initial=0), 0))


def _optimizer(run: Run) -> str | None:
    """The runner's optimizer, or what a recorded program steps (its class names)."""
    if run.model.get("kind") == "program":
        return ", ".join(run.model.get("optimizers") or []) or None
    return run.spec.optimizer if run.spec.mode == "train" else None


def build_summary(run: Run) -> dict[str, Any]:
    from .rank_summary import recorded_ranks, with_highest  # they read peaks from here

    ranks = with_highest((run.worker_summary or {}).get("distributed")) or recorded_ranks(run)
    with run.lock:
        tracked = tracked_peaks(run)
        seconds = [s.seconds for s in run.steps]
        return {
            "memviz_version": __version__,
            "state": run.state,
            "error": run.error["message"] if run.error else None,
            "model": {
                "name": run.spec.model,
                "class": run.model.get("class"),
                "parameters": run.model.get("parameters"),
                "trainable_parameters": run.model.get("trainable_parameters"),
                "parameter_bytes": run.model.get("parameter_bytes"),
            },
            # an imported snapshot says which device, and nothing of the workload
            "mode": None if run.spec.imported else run.spec.mode,
            "device": run.spec.device,
            "batch_size": None if run.spec.imported else run.spec.batch_size,
            "seq_len": None if run.spec.imported else run.spec.seq_len,
            "imported": run.spec.imported or None,
            "optimizer": _optimizer(run),
            "techniques": None if run.spec.imported else (
                (run.worker_summary or {}).get("techniques") or list(run.spec.techniques)),
            "output_drift": (run.worker_summary or {}).get("output_drift"),
            "distributed": ranks,
            "flops_per_step": (run.worker_summary or {}).get("flops_per_step"),
            # torch.compile in a tracked program: frames, graphs, breaks, what is unseen
            "compiled": (run.worker_summary or {}).get("compiled"),
            "model_on_disk": (run.worker_summary or {}).get("model_on_disk"),
            "simulated": bool(run.spec.simulate),
            # a mixture of experts: the routing the run forced or its simulation assumed
            "routing": (run.worker_summary or {}).get("routing"),
            # what CUDA's caching allocator would reserve for these allocations (a
            # simulation of a CUDA run, or any run read as if on a GPU)
            "simulated_cuda": cuda_model.replay(run.tensors)
            if run.spec.simulate and run.spec.device.startswith("cuda") and len(run.tensors)
            else None,
            "loss_final": next((s.loss for s in reversed(run.steps) if s.loss is not None),
                               None),
            "environment": run.environment,
            "steps": [
                {
                    "step": s.step,
                    "loss": s.loss,
                    "seconds": s.seconds,
                    "tokens": s.tokens,
                    "peak_rss_bytes": s.peak_rss_bytes,
                    "peak_gpu_bytes": s.peak_gpu_bytes,
                    "tracked_peak_bytes": s.tracked_peak_bytes,
                }
                for s in run.steps
            ],
            "track": run.spec.track,
            "peak": {"rss_bytes": peak_rss_bytes(run), "gpu_bytes": peak_gpu_bytes(run),
                     "tracked_bytes": tracked["tracked_bytes"],
                     # seconds on the run's clock when the tracked peak was reached
                     "tracked_t": tracked["t"]},
            "peak_by_category": tracked["peak_by_category"],
            "max_by_category": tracked["max_by_category"],
            "tracked_allocations": tracked["allocations"],
            "step_seconds_median": statistics.median(seconds) if seconds else None,
            # the median step's rate, beside the median step's time (a mean over every
            # step would let the first, warming up, outweigh the rest)
            "tokens_per_second": _median_rate(run),
            "error_kind": run.error["kind"] if run.error else None,
            "oom": last_moment(run),
        }


def _median_rate(run: Run) -> float | None:
    rates = [s.tokens / s.seconds for s in run.steps if s.seconds and s.seconds > 0]
    return statistics.median(rates) if rates else None
