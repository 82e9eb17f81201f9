"""Timeline drawing: sample-to-pixel latency at 20 Hz, and redraw with 1M samples."""

from __future__ import annotations

import statistics
import threading
import time

import numpy as np

from .common import Result


def _samples(t: np.ndarray) -> dict:
    base = 5e8 + 1e8 * np.sin(t)
    return {"type": "samples", "columns": {"t": t, "rss": base, "uss": base * 0.9,
                                           "peak_rss": base * 1.01, "system_used": base * 3}}


def _sample_to_pixel(app, repeats: int = 60) -> list[float]:
    """Apply one sample from another thread at 20 Hz; time until it is painted."""
    from memviz.core.run import Run
    from memviz.core.spec import RunSpec
    from memviz.gui.main_window import MainWindow

    window = MainWindow()
    window.resize(1280, 800)
    window.show()
    run = Run(RunSpec(), run_id=1)
    run.state = "running"
    window.runs[1] = run
    window.run_list.add_run(run)
    window._shown_changed()
    latencies = []
    sent_at = {}

    def paint_probe() -> None:
        layers = window.timeline._layers.get(1)
        curve = layers.curves.get("rss") if layers else None
        if curve is None:
            return
        x, _ = curve.getData()
        if x is not None and len(x) and x[-1] in sent_at:
            window.timeline.viewport().repaint()
            latencies.append(time.perf_counter() - sent_at.pop(x[-1]))

    window.timer.timeout.connect(paint_probe)

    def producer() -> None:
        for i in range(repeats):
            time.sleep(0.05)
            t = float(i + 1)
            sent_at[t] = time.perf_counter()
            run.apply(_samples(np.array([t])))

    thread = threading.Thread(target=producer)
    thread.start()
    deadline = time.perf_counter() + repeats * 0.05 + 5
    while (thread.is_alive() or sent_at) and time.perf_counter() < deadline:
        app.processEvents()
        time.sleep(0.001)
    thread.join()
    window.close()
    return latencies


def _redraw_1m(app, points: int = 1_000_000) -> tuple[float, float]:
    from memviz.core.run import Run
    from memviz.core.spec import RunSpec
    from memviz.gui.timeline import TimelineView

    run = Run(RunSpec(), run_id=1)
    run.apply(_samples(np.linspace(0, 3600, points)))
    view = TimelineView()
    view.resize(1200, 600)
    view.show()
    view.show_runs([run])
    app.processEvents()
    frames, updates = [], []
    for _ in range(10):
        t = time.perf_counter()
        view.viewport().repaint()
        frames.append(time.perf_counter() - t)
    for _ in range(10):
        run.revision += 1
        t = time.perf_counter()
        view.update_run(run)
        view.viewport().repaint()
        updates.append(time.perf_counter() - t)
    pans = []
    vb = view.plot_item.getViewBox()
    for i in range(20):
        t = time.perf_counter()
        vb.setXRange(100 * i, 100 * i + 600 + 50 * i, padding=0)
        view.viewport().repaint()
        pans.append(time.perf_counter() - t)
    view.close()
    return statistics.median(frames), statistics.median(pans), statistics.median(updates)


def measure() -> list[Result]:
    from memviz.gui.app import make_app

    app = make_app()
    latencies = _sample_to_pixel(app)
    p50 = statistics.median(latencies) * 1000
    p95 = float(np.percentile(latencies, 95)) * 1000
    redraw, pan, update = _redraw_1m(app)
    return [
        Result("sample → pixel latency (20 Hz)", p95, "ms p95", "≤ 100 ms", p95 <= 100,
               f"median {p50:.1f} ms over {len(latencies)} samples"),
        Result("timeline redraw, 1M samples", redraw * 1000, "ms", "≤ 16 ms",
               redraw <= 0.016, "repaint of 3 visible curves"),
        Result("timeline pan/zoom, 1M samples", pan * 1000, "ms", "≤ 16 ms", pan <= 0.016,
               "setXRange + repaint"),
        Result("timeline data update, 1M samples", update * 1000, "ms", "(info)", True,
               "setData of 4 curves (bounds, downsampling) + repaint"),
    ]
