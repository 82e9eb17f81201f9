"""The .memviz file: bytes per tensor event on disk, and opening a 1M-event file."""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from memviz.core.spec import RunSpec
from memviz.snapshot import Recorder, open_run

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
    imported, peak_mib = _import_torch_snapshot(events)
    return [
        Result("snapshot: bytes per tensor event (whole file)", per_event, "B", "≤ 32 B",
               per_event <= 32, f"{size / 2**20:.1f} MiB for {events:,} events (synthetic)"),
        Result("snapshot: open a 1M-event file", opened * 1000, "ms", "≤ 2000 ms",
               opened <= 2.0, "all events decoded into a Run"),
        Result("snapshot: open a tenth of its time", windowed * 1000, "ms", "(info)", True,
               f"{len(window.tensors):,} allocations loaded of {len(run.tensors):,}"),
        Result("import a 1M-entry PyTorch snapshot", imported * 1000, "ms", "≤ 10000 ms",
               imported <= 10.0, f"pickle; process peak RSS {peak_mib:.0f} MiB"),
    ]


def _import_torch_snapshot(entries: int) -> tuple[float, float]:
    """A synthetic _dump_snapshot pickle with ``entries`` trace entries, opened as a Run."""
    import pickle
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    trace, live = [], []
    for i in range(entries // 2):
        addr = (1 << 40) + 512 * i
        trace.append({"action": "alloc", "addr": addr, "size": int(rng.integers(512, 1 << 20)),
                      "stream": 0, "frames": [], "time_us": i * 10, "category": "activation"})
        live.append(addr)
        if len(live) > 100:
            freed = live.pop(0)
            trace.append({"action": "free_completed", "addr": freed, "size": 512, "stream": 0,
                          "frames": [], "time_us": i * 10 + 5})
    path = os.path.join(tempfile.mkdtemp(), "big.pickle")
    with open(path, "wb") as f:
        pickle.dump({"segments": [], "device_traces": [trace]}, f, protocol=4)
    del trace
    # in a fresh process: its wall time, and its peak RSS is the import's own
    child = (
        "import resource, sys, time\n"
        "from memviz.snapshot import open_run\n"
        "t = time.perf_counter(); run = open_run(sys.argv[1]); t = time.perf_counter() - t\n"
        "print(t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(run.tensors))\n"
    )
    out = subprocess.run([sys.executable, "-c", child, path], capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    elapsed, peak, rows = float(out[0]), int(out[1]) / 1024, int(out[2])
    assert rows == entries // 2
    return elapsed, peak
