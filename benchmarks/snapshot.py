"""The .memviz file: bytes per tensor event on disk, and opening a 1M-event file."""

from __future__ import annotations

import os
import tempfile
import time

from memviz.core.spec import RunSpec
from memviz.snapshot import Recorder, connect_sql, open_run

from .alloc_view import synthetic_events
from .common import Result


def measure(events: int = 1_000_000) -> list[Result]:
    path = os.path.join(tempfile.mkdtemp(), "big.memviz")
    recorder = Recorder(path, RunSpec().to_dict())
    cols = synthetic_events(events // 2)
    recorder.write([{"type": "strings", "entries": [["module", 0, "m"], ["op", 0, "op"],
                                                    ["dtype", 0, "float32"], ["shape", 0, "1"],
                                                    ["device", 0, "cpu"]]}])
    for start in range(0, events, 65_536):
        recorder.write([{"type": "tensor_events",
                         "columns": {k: v[start:start + 65_536] for k, v in cols.items()}}])
    recorder.finish("finished")
    size = os.path.getsize(path)
    started = time.perf_counter()
    run = open_run(path)
    opened = time.perf_counter() - started
    assert run.tensors.event_count == events
    per_event = size / events
    t = run.tensors.rows.column("t_alloc")
    span = (float(t[len(t) // 2]), float(t[len(t) // 2 + len(t) // 10]))
    started = time.perf_counter()
    window = open_run(path, t_range=span)
    windowed = time.perf_counter() - started
    started = time.perf_counter()
    connect_sql(path).close()
    sql_built = time.perf_counter() - started
    imported, peak_mib = _import_torch_snapshot(events)
    recorded = [(steps, *_recorded_bytes_per_event(steps)) for steps in (20, 300)]
    return [
        Result("snapshot: bytes per tensor event (whole file)", per_event, "B", "≤ 12 B",
               per_event <= 12, f"{size / 2**20:.1f} MiB for {events:,} events (synthetic)"),
        *(Result(f"snapshot: bytes per event, {steps}-step run", b, "B", "≤ 12 B", b <= 12,
                 f"gpt2-tiny 1 × 32, every step detailed: {n:,} events")
          for steps, b, n in recorded),
        Result("snapshot: build its rows for SQL", sql_built * 1000, "ms", "(info)", True,
               "connect_sql on the 1M-event file: 500,000 allocations as rows"),
        Result("snapshot: open a 1M-event file", opened * 1000, "ms", "≤ 2000 ms",
               opened <= 2.0, "all events decoded into a Run"),
        Result("snapshot: open a tenth of its time", windowed * 1000, "ms", "(info)", True,
               f"{len(window.tensors):,} allocations loaded of {len(run.tensors):,}"),
        Result("import a 1M-entry PyTorch snapshot", imported * 1000, "ms", "≤ 10000 ms",
               imported <= 10.0, f"torch's layout, 150 MB; process peak RSS {peak_mib:.0f} MiB"),
    ]


def _recorded_bytes_per_event(steps: int) -> tuple[float, int]:
    """A real run recorded by ``memviz run -o``: its file's bytes per tensor event."""
    import sqlite3
    import subprocess
    import sys

    path = os.path.join(tempfile.mkdtemp(), "run.memviz")
    subprocess.run([sys.executable, "-m", "memviz", "run", "--model", "gpt2-tiny", "--steps",
                    str(steps), "--batch-size", "1", "--seq-len", "32", "--detail", "all",
                    "-o", path], check=True, capture_output=True)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    (events,) = db.execute("SELECT sum(count) FROM event_batches").fetchone()
    db.close()
    return os.path.getsize(path) / events, events


def _import_torch_snapshot(entries: int) -> tuple[float, float]:
    """A snapshot in torch's layout with ``entries`` trace entries, opened as a Run in a
    fresh process (its peak RSS is the import's own)."""
    from .torch_import import open_in_child
    from .torch_snapshot_file import write_snapshot

    path = os.path.join(tempfile.mkdtemp(), "big.pickle")
    held = write_snapshot(path, entries)
    elapsed, peak, rows = open_in_child(path, "memviz")
    assert rows == held["allocations"]
    os.unlink(path)
    return elapsed, peak
