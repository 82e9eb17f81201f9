"""Exports cost bounded memory, as opening does (64 MiB plus 16 bytes a byte of file):
a snapshot of half a million tiny allocations written as a PyTorch pickle, and a run
of a million samples written as CSV, are built and written a block at a time."""

from __future__ import annotations

import pickle
import shutil
import sqlite3
import subprocess
import sys

import pytest

from .conftest import WORKER_DEADLINE_S

FLOOR = 64 << 20
PER_FILE_BYTE = 16

# the export runs in a process of its own, which reports its highest RSS: VmHWM, its
# own memory's (getrusage's maxrss carries the forking parent's across exec)
MEASURED = ("import runpy, sys\n"
            "sys.argv = ['memviz', *sys.argv[1:]]\n"
            "try:\n"
            "    runpy.run_module('memviz', run_name='__main__')\n"
            "except SystemExit as end:\n"
            "    assert not end.code, end.code\n"
            "with open('/proc/self/status') as status:\n"
            "    kib = next(int(line.split()[1]) for line in status if "
            "line.startswith('VmHWM:'))\n"
            "print(kib * 1024)\n")


def _export_peak(path, kind: str, out) -> int:
    done = subprocess.run([sys.executable, "-c", MEASURED, "export", str(path), "--to", kind,
                           "-o", str(out)], capture_output=True, text=True,
                          timeout=WORKER_DEADLINE_S)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


def test_a_snapshot_of_many_tiny_allocations_exports_within_its_bound(tmp_path):
    entries = []
    for i in range(500_000):
        entry = {"addr": 512 * i, "size": 512, "stream": 0, "frames": []}
        entries += [{"action": "alloc", **entry, "time_us": 2 * i},
                    {"action": "free_completed", **entry, "time_us": 2 * i + 1}]
    path = tmp_path / "tiny.pickle"
    with open(path, "wb") as f:
        pickle.dump({"segments": [], "device_traces": [entries]}, f, protocol=4)
    del entries
    out = tmp_path / "out.pickle"
    peak = _export_peak(path, "torch-pickle", out)
    assert peak < FLOOR + PER_FILE_BYTE * path.stat().st_size, peak  # was 893 MB
    with open(out, "rb") as f:
        back = pickle.load(f)
    trace = back["device_traces"][0]
    assert len(trace) == 1 + 3 * 500_000  # the segment, then alloc, requested, completed
    assert [e["action"] for e in trace[:4]] == ["segment_alloc", "alloc", "free_requested",
                                                 "free_completed"]
    assert all(trace[k]["time_us"] <= trace[k + 1]["time_us"] for k in range(len(trace) - 1))


@pytest.fixture()
def many_samples(tmp_path):
    """A file as memviz's recorder writes it, with a million samples."""
    from memviz.core.spec import RunSpec
    from memviz.snapshot import Recorder

    path = tmp_path / "long.memviz"
    recorder = Recorder(path, RunSpec(model="conv-lm").to_dict())
    recorder.finish("finished", None)
    db = sqlite3.connect(path)
    columns = [row[1] for row in db.execute("PRAGMA table_info(samples)")
               if row[1] != "by_category"]
    # one sample with every column, then a million that SQLite stores in a few bytes
    # each (their empty columns): every column is written for every row
    db.execute(f"INSERT INTO samples ({', '.join(columns)}) "
               f"VALUES ({', '.join('1' * len(columns))})")
    db.executemany("INSERT INTO samples (t, rss) VALUES (?, ?)",
                   ((i * 1e-3, 1e8 + i) for i in range(1, 1_000_000)))
    db.commit()
    db.execute("VACUUM")
    db.close()
    return path


def test_a_long_runs_samples_export_as_csv_within_the_bound(many_samples, tmp_path):
    out = tmp_path / "csv"
    peak = _export_peak(many_samples, "csv", out)
    assert peak < FLOOR + PER_FILE_BYTE * many_samples.stat().st_size, peak
    with open(out / "samples.csv") as f:
        header = f.readline().strip().split(",")
        lines = sum(1 for _ in f)
    assert header[:2] == ["t", "rss"] and len(header) > 20 and lines == 1_000_000
    shutil.rmtree(out)
