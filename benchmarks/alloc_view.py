"""Allocation view at 10k, 100k and 1M allocations (every one kept), and the
tensor-event stream from the worker's tracker batches to a Run."""

from __future__ import annotations

import statistics
import time

import numpy as np

from memviz.core.run import Run
from memviz.core.spec import RunSpec

from .common import Result


def synthetic_events(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n allocations shaped like training: short temporaries, longer activations."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 600, n))
    life = np.where(rng.random(n) < 0.7, rng.exponential(0.002, n), rng.exponential(0.3, n))
    nbytes = (2 ** rng.integers(8, 24, n)).astype(np.int64)
    # Offsets do not change the cost of drawing; these simply wrap at 512 MiB.
    offset = (np.cumsum(nbytes) - nbytes) % (512 << 20)
    order_end = t + life
    events_t = np.concatenate([t, order_end])
    kinds = np.concatenate([np.zeros(n, np.uint8), np.ones(n, np.uint8)])
    ids = np.concatenate([np.arange(n), np.arange(n)])
    order = np.argsort(events_t, kind="stable")
    # allocation ids must arrive in order: keep allocs sorted by t, frees after their alloc
    cols = {
        "t": events_t[order], "id": ids[order], "kind": kinds[order],
        "nbytes": np.concatenate([nbytes, nbytes])[order],
        "category": np.concatenate([rng.integers(0, 11, n), np.zeros(n, int)])[order]
        .astype(np.uint8),
        "offset": np.concatenate([offset, np.zeros(n, np.int64)])[order],
    }
    for name in ("dtype", "shape", "device", "module", "op", "step", "stack"):
        cols[name] = np.zeros(2 * n, np.int32)
    cols["phase"] = np.zeros(2 * n, np.uint8)
    return cols


# the names synthetic_events' rows refer to
SYNTHETIC_STRINGS = {"type": "strings", "entries": [
    ["module", 0, "m"], ["op", 0, "op"], ["dtype", 0, "float32"], ["shape", 0, "1"],
    ["device", 0, "cpu"]]}


def _run_with(n: int) -> Run:
    run = Run(RunSpec(), run_id=1)
    run.apply(SYNTHETIC_STRINGS)
    cols = synthetic_events(n)
    for start in range(0, len(cols["t"]), 20_000):
        run.apply({"type": "tensor_events",
                   "columns": {k: v[start:start + 20_000] for k, v in cols.items()}})
    run.apply({"type": "samples", "columns": {"t": np.array([0.0, 601.0])}})
    return run


def _draw_times(app, n: int) -> tuple[float, float, int]:
    from memviz.gui.alloc_view import AllocationView

    run = _run_with(n)
    view = AllocationView()
    view.resize(1200, 400)
    view.show()
    app.processEvents()
    view.setXRange(0, 601, padding=0)
    started = time.perf_counter()
    view.set_run(run)
    view.redraw()
    view.viewport().repaint()
    first = time.perf_counter() - started
    pans = []
    for i in range(10):
        started = time.perf_counter()
        view.setXRange(20 * i, 20 * i + 100 + 30 * i, padding=0)
        view.redraw()
        view.viewport().repaint()
        pans.append(time.perf_counter() - started)
    bars = view.bar_count()
    view.close()
    return first, statistics.median(pans), bars


def _stream_rate(n: int = 1_000_000) -> float:
    """Tensor events per second through framing, validation and Run.apply."""
    from memviz.protocol.framing import decode_payload, encode_frame
    from memviz.protocol.messages import validate_message

    cols = synthetic_events(n // 2)
    frames = [encode_frame([{"type": "tensor_events",
                             "columns": {k: v[s:s + 10_000] for k, v in cols.items()}}])
              for s in range(0, n, 10_000)]
    run = Run(RunSpec())
    started = time.perf_counter()
    for frame in frames:
        for msg in decode_payload(frame[4:]):
            run.apply(validate_message(msg))
    elapsed = time.perf_counter() - started
    assert run.tensors.event_count == n
    return n / elapsed


def measure() -> list[Result]:
    from memviz.gui.app import make_app

    app = make_app()
    results = []
    for n in (10_000, 100_000, 1_000_000):
        first, pan, bars = _draw_times(app, n)
        results.append(Result(f"allocation view, {n:,} allocations: first draw", first * 1000,
                              "ms", "≤ 1000 ms", first <= 1.0, f"{bars:,} bands drawn"))
        results.append(Result(f"allocation view, {n:,} allocations: pan/zoom", pan * 1000,
                              "ms", "≤ 50 ms", pan <= 0.05, "level of detail per frame"))
    rate = _stream_rate()
    results.append(Result("tensor events: decode + validate + apply", rate, "events/s",
                          "≥ 200,000 /s", rate >= 200_000, "1M events in 10k batches"))
    return results
