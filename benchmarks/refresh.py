"""The window's refresh tick against run length (``python -m benchmarks.refresh``).

A run followed live must cost each tick only what arrived since the last one: a
synthetic tracked run (20 Hz samples, a step every 0.3 s with its phases, ten
allocations a step) is fed to the real window at lengths from one minute to an
hour, and a tick is timed after a fresh batch of messages arrives, on the
selected run, with the tab a user would have open.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

from memviz.core.categories import CATEGORIES, SAMPLE_PREFIX
from memviz.core.run import Run
from memviz.core.spec import RunSpec
from memviz.protocol.messages import EVENT_COLUMNS, EVENT_DTYPES, SAMPLE_COLUMNS

from .common import Result, print_table

SAMPLE_HZ = 20
STEP_S = 0.3
ALLOCS_PER_STEP = 10
MODULES = [f"transformer.h.{i}.{part}" for i in range(4) for part in ("attn", "mlp", "ln_1")]


def _samples(t0: float, t1: float) -> dict:
    t = np.arange(t0, t1, 1 / SAMPLE_HZ)
    n = len(t)
    cols = {c: np.full(n, np.nan) for c in SAMPLE_COLUMNS}
    cols["t"] = t
    wave = 1 + 0.3 * np.sin(t * 2 * np.pi / STEP_S)
    cols["rss"] = 700e6 * wave
    cols["uss"] = 650e6 * wave
    cols["peak_rss"] = 720e6 * wave
    cols["system_used"] = np.full(n, 8e9)
    cols["tracked_total"] = 200e6 * wave
    for i, c in enumerate(CATEGORIES):
        cols[SAMPLE_PREFIX + c] = (i + 1) * 5e6 * wave
    return {"type": "samples", "columns": cols}


def _steps(first: int, last: int, first_id: int) -> list[dict]:
    messages = []
    rows = []
    for step in range(first, last):
        begin = step * STEP_S
        for k, name in enumerate(("forward", "backward", "optimizer")):
            messages.append({"type": "phase", "t": begin + k * 0.1, "step": step,
                             "name": name, "edge": "begin"})
            messages.append({"type": "phase", "t": begin + k * 0.1 + 0.09, "step": step,
                             "name": name, "edge": "end"})
        for j in range(ALLOCS_PER_STEP):
            ident = first_id + (step - first) * ALLOCS_PER_STEP + j
            t = begin + j * STEP_S / ALLOCS_PER_STEP
            rows.append([t, ident, 0, (j + 1) << 20, 5, j << 20, 0, 0, 0, j % len(MODULES),
                         0, 2, step, -1])
            rows.append([t + 0.05, ident, 1, (j + 1) << 20, 5, 0, -1, -1, -1, -1, -1, 2, step,
                         -1])
        messages.append({"type": "step_done", "t": begin + STEP_S, "step": step, "loss": 3.0,
                         "seconds": STEP_S, "tokens": 1024, "peak_rss_bytes": int(9e8),
                         "peak_gpu_bytes": None, "tracked_peak_bytes": int(3e8)})
    rows.sort(key=lambda r: r[0])
    table = np.array(rows, dtype=np.float64)
    columns = {name: table[:, i].astype(EVENT_DTYPES[name])
               for i, name in enumerate(EVENT_COLUMNS)}
    messages.append({"type": "tensor_events", "columns": columns})
    return messages


def synthetic_run(seconds: float) -> Run:
    """A running tracked run ``seconds`` long."""
    run = Run(RunSpec(model="gpt2-tiny", steps=1 << 20), run_id=1)
    run.apply_all([
        {"type": "run_started", "spec": run.spec.to_dict(), "environment": {},
         "model": {"name": "gpt2-tiny", "module_tree": []}, "t0_wall": time.time()},
        {"type": "strings", "entries": [["module", i, m] for i, m in enumerate(MODULES)]
         + [["dtype", 0, "float32"], ["shape", 0, "4x256"], ["device", 0, "cpu"],
            ["op", 0, "mm"]]},
    ])
    grow(run, 0.0, seconds)
    return run


def grow(run: Run, t0: float, t1: float) -> None:
    """What arrives between ``t0`` and ``t1`` of the run's clock."""
    first, last = round(t0 / STEP_S), round(t1 / STEP_S)
    run.apply_all([_samples(t0, t1), *_steps(first, last, len(run.tensors))])


TABS = ("Steps", "Allocations", "At a moment", "Modules")


def measure(lengths_min: tuple[float, ...] = (1, 12, 60), ticks: int = 8) -> list[Result]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from memviz.gui.app import make_app
    from memviz.gui.main_window import MainWindow

    app = make_app()
    results = []
    costs = {}
    for minutes in lengths_min:
        window = MainWindow()
        window.resize(1280, 800)
        window.show()
        seconds = minutes * 60
        run = synthetic_run(seconds)
        window.runs[run.run_id] = run
        window.run_list.add_run(run)
        window._shown_changed()
        window.set_cursor(seconds / 2)  # a moment chosen, as a user looking at one would
        app.processEvents()
        by_tab = {}
        for tab in TABS:
            window.tabs.setCurrentIndex(next(i for i in range(window.tabs.count())
                                             if window.tabs.tabText(i) == tab))
            times = []
            for _ in range(ticks):
                end = seconds + 0.3
                grow(run, seconds, end)  # one tick's worth arrives
                seconds = end
                started = time.perf_counter()
                window.refresh()
                app.processEvents()  # the repaint the tick causes
                times.append(time.perf_counter() - started)
            by_tab[tab] = statistics.median(times[2:])
        costs[minutes] = max(by_tab.values())
        window.close()
        worst = max(by_tab, key=by_tab.get)
        results.append(Result(f"refresh tick, {minutes:g} min run", costs[minutes] * 1000, "ms",
                              "≤ 16 ms", costs[minutes] <= 0.016,
                              f"{len(run.samples):,} samples, {len(run.tensors):,} allocations;"
                              f" worst tab {worst} ("
                              + ", ".join(f"{t} {v * 1000:.1f}" for t, v in by_tab.items())
                              + " ms)"))
    first, last = lengths_min[0], lengths_min[-1]
    ratio = costs[last] / costs[first]
    results.append(Result(f"tick at {last:g} min / at {first:g} min", ratio, "×", "flat (≤ 2×)",
                          ratio <= 2.0, "a tick costs what arrived, not the run's length"))
    return results


if __name__ == "__main__":
    print_table(measure())
