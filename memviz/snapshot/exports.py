"""Exports other tools read: Chrome trace JSON (Perfetto, chrome://tracing) and CSV.

Chrome trace: counter tracks for RSS, USS, peak RSS and every category's live
bytes; complete slices for steps and their phases (forward, backward, optimizer,
generate, load). Timestamps are the wall clock (the run's ``t0_wall`` plus its own
clock) in microseconds, as torch.profiler's traces are, so a profiler trace of the
same process lines up with it in Perfetto.
CSV: one file per table (samples, tensor events, steps and a summary), in a folder;
shapes as ``4x256x256``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..core.categories import CATEGORIES, SAMPLE_PREFIX
from ..core.run import Run
from ..core.summary import build_summary

COUNTERS = ("rss", "uss", "peak_rss", "gpu_process_used", "torch_allocated", "torch_reserved")


def chrome_trace(run: Run) -> dict:
    events: list[dict] = [
        {"name": "process_name", "ph": "M", "pid": 1,
         "args": {"name": f"memviz: {run.spec.label()}"}},
        {"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": "steps"}},
        {"name": "thread_name", "ph": "M", "pid": 1, "tid": 2, "args": {"name": "phases"}},
    ]
    with run.lock:
        origin = run.t0_wall  # seconds since the epoch at the run's time 0
        t = np.asarray(run.samples.column("t")) + origin
        memory = {c: np.asarray(run.samples.column(c)) for c in COUNTERS
                  if run.samples.has_data(c)}
        cats = {c: np.asarray(run.samples.column(SAMPLE_PREFIX + c)) for c in CATEGORIES
                if run.samples.has_data(SAMPLE_PREFIX + c)}
        phases = [(p.step, p.name, p.begin + origin, p.end + origin) for p in run.phases]
        steps = list(run.steps)
    for i, ts in enumerate(t):
        us = float(ts) * 1e6
        values = {c: float(v[i]) for c, v in memory.items() if np.isfinite(v[i])}
        if values:
            events.append({"name": "memory (bytes)", "ph": "C", "ts": us, "pid": 1,
                           "args": values})
        by_cat = {c: float(v[i]) for c, v in cats.items() if np.isfinite(v[i])}
        if by_cat:
            events.append({"name": "tracked by category (bytes)", "ph": "C", "ts": us,
                           "pid": 1, "args": by_cat})
    for step, name, begin, end in phases:
        if np.isfinite(end):
            events.append({"name": name, "cat": "phase", "ph": "X", "ts": begin * 1e6,
                           "dur": (end - begin) * 1e6, "pid": 1, "tid": 2,
                           "args": {"step": step}})
    for s in steps:
        events.append({"name": f"step {s.step}", "cat": "step", "ph": "X",
                       "ts": (origin + s.t - s.seconds) * 1e6, "dur": s.seconds * 1e6,
                       "pid": 1,
                       "tid": 1, "args": {"loss": s.loss, "peak_rss_bytes": s.peak_rss_bytes,
                                          "tracked_peak_bytes": s.tracked_peak_bytes}})
    # torch.profiler (Kineto) writes ts relative to baseTimeNanoseconds; ours are absolute,
    # so their base is 0 and the two line up: kineto ts + its base / 1000 = ours
    return {"traceEvents": events, "displayTimeUnit": "ms", "baseTimeNanoseconds": 0,
            "otherData": {"memviz_version": build_summary(run)["memviz_version"],
                          "clock": "wall clock, microseconds since the epoch",
                          "t0_wall": origin}}


def write_chrome_trace(run: Run, out: Path) -> None:
    out.write_text(json.dumps(chrome_trace(run)))


def _cells(values: Iterable[Any]) -> list[Any]:
    """A CSV row: a missing value (None, NaN) is an empty field, as spreadsheets and
    pandas read a missing value, never the text ``nan``."""
    return ["" if v is None or (isinstance(v, float) and v != v) else v for v in values]


CSV_BLOCK = 65_536


def _blocks(columns: list) -> Iterator[list[list]]:
    """The columns' values as Python lists, ``CSV_BLOCK`` rows at a time: a long run's
    samples or events never become Python objects all at once (a float is 24 bytes
    of Python for 8 of array)."""
    count = len(columns[0]) if columns else 0
    for start in range(0, count, CSV_BLOCK):
        yield [column[start:start + CSV_BLOCK].tolist() for column in columns]


def write_csv(run: Run, folder: Path) -> list[Path]:
    """samples.csv, tensor_events.csv (one row per allocation), steps.csv, summary.csv;
    missing values are empty fields."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with run.lock:
        samples = run.samples
        names = [n for n in samples.names if samples.has_data(n)]
        path = folder / "samples.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(names)
            for block in _blocks([samples.column(n) for n in names]):
                w.writerows(map(_cells, zip(*block, strict=True)))
        written.append(path)
        log, rows = run.tensors, run.tensors.rows
        path = folder / "tensor_events.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "t_alloc", "t_free", "nbytes", "category", "dtype", "shape",
                        "device", "module", "op", "phase", "step"])
            names = list(rows.names)
            first = 0
            for block in _blocks([rows.column(n) for n in names]):
                cols = dict(zip(names, block, strict=True))
                for j in range(len(block[0])):
                    w.writerow(_cells([
                        first + j, cols["t_alloc"][j], cols["t_free"][j], cols["nbytes"][j],
                        CATEGORIES[cols["category"][j]],
                        log.string("dtype", cols["dtype"][j]),
                        log.string("shape", cols["shape"][j]).replace("×", "x"),
                        *(log.string(k, cols[k][j]) for k in ("device", "module", "op")),
                        cols["phase"][j], cols["step"][j]]))
                first += len(block[0])
        written.append(path)
        path = folder / "steps.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["step", "loss", "seconds", "tokens", "peak_rss_bytes",
                        "peak_gpu_bytes", "tracked_peak_bytes"])
            w.writerows(_cells([s.step, s.loss, s.seconds, s.tokens, s.peak_rss_bytes,
                                s.peak_gpu_bytes, s.tracked_peak_bytes]) for s in run.steps)
        written.append(path)
    summary = build_summary(run)
    path = folder / "summary.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "value"])
        for key in ("mode", "device", "batch_size", "seq_len", "step_seconds_median"):
            w.writerow(_cells([key, summary[key]]))
        for key, value in summary["peak"].items():
            w.writerow(_cells([f"peak.{key}", value]))
        for key, value in (summary["peak_by_category"] or {}).items():
            w.writerow(_cells([f"peak_by_category.{key}", value]))
    written.append(path)
    return written
