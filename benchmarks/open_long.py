"""Opening long runs: ``python -m benchmarks.open_long [ALLOCATIONS ...]``.

Writes a synthetic recording of each size (default 1M, 3M and 10M allocations,
shaped like training steps: many short temporaries, fewer long activations, a
sample every 0.1 s) through the real Recorder, then opens it in a fresh process,
twice: as a Run (``open_run``) and in the window (offscreen, every view drawn).
Prints the time and the process's peak RSS against the run's length. Budget: a
10M-allocation run opens in ≤ 2 s and ≤ 1 GB of window RSS.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

from memviz.cli.formatting import table
from memviz.core.categories import CATEGORIES, SAMPLE_PREFIX
from memviz.core.spec import RunSpec
from memviz.snapshot import Recorder

from . import common

CHUNK = 250_000  # allocations generated at once
STEP_S = 0.5  # a synthetic step's length; ~1,000 allocations per step
BUDGET_S, BUDGET_MIB = 2.0, 1024


def _chunk(first_id: int, n: int, t0: float, rng: np.random.Generator) -> dict:
    """``n`` allocations from ``t0`` on, with their frees (all inside the chunk)."""
    span = n / 2000.0  # 2,000 allocations per second of run
    t = t0 + np.sort(rng.uniform(0, span, n))
    life = np.where(rng.random(n) < 0.7, rng.exponential(0.002, n), rng.exponential(0.2, n))
    t_free = np.minimum(t + life, t0 + span)
    nbytes = (2 ** rng.integers(8, 24, n)).astype(np.int64)
    events_t = np.concatenate([t, t_free])
    order = np.argsort(events_t, kind="stable")
    ids = np.arange(first_id, first_id + n)
    cols = {
        "t": events_t[order],
        "id": np.concatenate([ids, ids])[order],
        "kind": np.concatenate([np.zeros(n, np.uint8), np.ones(n, np.uint8)])[order],
        "nbytes": np.concatenate([nbytes, nbytes])[order],
        "category": np.concatenate([rng.integers(0, len(CATEGORIES), n),
                                    np.zeros(n, int)])[order].astype(np.uint8),
        "offset": np.concatenate([(np.cumsum(nbytes) - nbytes) % (4 << 30),
                                  np.zeros(n, np.int64)])[order],
        "module": np.concatenate([rng.integers(0, 100, n), np.zeros(n, int)])[order],
        "op": np.concatenate([rng.integers(0, 50, n), np.zeros(n, int)])[order],
        "step": np.concatenate([((t - 0) / STEP_S).astype(int), np.zeros(n, int)])[order],
        "phase": np.concatenate([rng.integers(1, 5, n), np.zeros(n, int)])[order],
    }
    for name in ("module", "op", "step"):
        cols[name] = cols[name].astype(np.int32)
    cols["phase"] = cols["phase"].astype(np.uint8)
    for name in ("dtype", "shape", "device", "stack"):
        cols[name] = np.zeros(2 * n, np.int32)
    cols["stack"] -= 1
    return cols, t0 + span


def write_long_run(path: str, allocations: int) -> float:
    """A recording with ``allocations`` allocations; returns its length in seconds."""
    rng = np.random.default_rng(0)
    recorder = Recorder(path, RunSpec().to_dict())
    strings = [["module", i, f"transformer.h.{i // 8}.layer{i % 8}"] for i in range(100)]
    strings += [["op", i, f"aten.op{i}"] for i in range(50)]
    strings += [["dtype", 0, "float32"], ["shape", 0, "256×256"], ["device", 0, "cpu"]]
    recorder.write([{"type": "strings", "entries": strings}])
    t = 0.0
    for first in range(0, allocations, CHUNK):
        cols, end = _chunk(first, min(CHUNK, allocations - first), t, rng)
        for start in range(0, len(cols["t"]), 16_384):
            recorder.write([{"type": "tensor_events",
                             "columns": {k: v[start:start + 16_384] for k, v in cols.items()}}])
        samples = np.arange(t, end, 0.1)
        # memory climbs to its peak at 70 % of the run, then eases: the window the
        # window opens is late, behind most of the file
        rise = 1.0 - np.abs(samples / (allocations / 2000.0) - 0.7)
        columns = {"t": samples, "rss": 3e9 + 1e9 * rise, "tracked_total": 2e9 + 1e9 * rise}
        for c in CATEGORIES:
            columns[SAMPLE_PREFIX + c] = np.full(len(samples), 2e9 / len(CATEGORIES))
        recorder.write([{"type": "samples", "columns": columns}])
        t = end
    recorder.finish("finished")
    return t


CHILD = """
import os, resource, sys, time
os.environ["QT_QPA_PLATFORM"] = "offscreen"
path, how = sys.argv[1], sys.argv[2]
if how == "run":
    from memviz.snapshot import open_run
    started = time.perf_counter()
    run = open_run(path)
    took = time.perf_counter() - started
    n = len(run.tensors)
else:
    from memviz.gui.app import make_app
    from memviz.gui.main_window import MainWindow
    app = make_app()
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    app.processEvents()
    started = time.perf_counter()
    run = window.open_snapshot(path)
    window.refresh()
    app.processEvents()
    took = time.perf_counter() - started
    n = len(run.tensors)
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, n)
"""


def open_in_child(path: str, how: str) -> tuple[float, float, int]:
    return common.open_in_child(CHILD, path, how, timeout=900)


def main(argv: list[str]) -> int:
    sizes = [int(float(a)) for a in argv] or [1_000_000, 3_000_000, 10_000_000]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in sizes:
            path = os.path.join(folder, f"run-{n}.memviz")
            started = time.perf_counter()
            length = write_long_run(path, n)
            written = time.perf_counter() - started
            size = os.path.getsize(path)
            run_s, run_mib, got = open_in_child(path, "run")
            window_s, window_mib, _ = open_in_child(path, "window")
            assert got == n, (got, n)
            ok = n < 10_000_000 or (window_s <= BUDGET_S and window_mib <= BUDGET_MIB)
            rows.append([f"{n:,}", f"{length / 3600:.1f} h", f"{size / 2**20:,.0f} MiB",
                         f"{written:.0f} s", f"{run_s:.2f} s", f"{run_mib:,.0f} MiB",
                         f"{window_s:.2f} s", f"{window_mib:,.0f} MiB",
                         "" if ok else "MISS"])
            print("  ".join(rows[-1]), file=sys.stderr, flush=True)
            os.unlink(path)
    print(table(["allocations", "run length", "file", "written in", "open_run",
                 "its peak RSS", "window open", "window peak RSS", ""], rows, numbers=False))
    print(f"\nbudget at 10M allocations: ≤ {BUDGET_S:.0f} s and ≤ {BUDGET_MIB} MiB in the window")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
