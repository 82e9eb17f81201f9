"""PyTorch memory snapshots read by memviz's own opcode walk: the same objects as
Python's unpickler, the same allocations, in memory that does not grow with Python
objects per entry. Real pickles: written by ``pickle`` itself, and written opcode by
opcode in torch's layout by the benchmark's writer (checked against ``pickle``)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.torch_snapshot_file import write_snapshot
from memviz.snapshot import open_run
from memviz.snapshot.plain_pickle import PlainPickleWalker

_leaves = (st.none() | st.booleans() | st.integers(-(1 << 120), 1 << 120)
           | st.floats(allow_nan=False) | st.text(max_size=300))
_plain = st.recursive(
    _leaves,
    lambda inner: (st.lists(inner, max_size=1500) | st.tuples(inner, inner)
                   | st.lists(inner, max_size=4).map(tuple)
                   | st.dictionaries(st.text(max_size=8), inner, max_size=6)),
    max_leaves=3000)


@settings(max_examples=60, deadline=None)
@given(value=_plain, protocol=st.integers(0, 5))
def test_the_walk_reads_what_pickle_reads(tmp_path_factory, value, protocol):
    shared = [value, "shared"]
    data = {"x": value, "again": [shared, shared, {"k": shared}]}
    path = tmp_path_factory.mktemp("walk") / "v.pickle"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    got = PlainPickleWalker(path, lambda trace, entries: None).walk()
    assert got == data
    assert got["again"][0] is got["again"][1]  # shared objects stay shared


def _entry(i: int, frames: list, action: str = "alloc") -> dict:
    return {"action": action, "addr": (1 << 40) + 512 * i, "size": 512 * (i + 1),
            "stream": 0, "time_us": 1_000_000 + 10 * i, "frames": frames}


def test_frames_shared_across_batches_keep_their_stack(tmp_path):
    """Entries thousands apart share one frames list (a memo reference back past many
    batches that were streamed and let go): each still names its own stack."""
    frame = {"filename": "train.py", "line": 7, "name": "step"}
    deep = [frame, {"filename": "model.py", "line": 3, "name": "forward"}]
    shallow = [frame]
    trace = [_entry(i, deep if i % 2 else shallow) for i in range(5000)]
    trace += [{**_entry(i, [], "free_completed"), "time_us": 1_050_000 + i}
              for i in range(0, 5000, 5)]
    path = tmp_path / "shared.pickle"
    path.write_bytes(pickle.dumps({"segments": [], "device_traces": [trace]}, protocol=4))
    run = open_run(path)
    rows = run.tensors.rows
    assert len(rows) == 5000
    assert list(rows.column("nbytes")[:3]) == [512, 1024, 1536]
    stacks = [run.tensors.stack_text(int(s)) for s in rows.column("stack")[:2]]
    assert stacks == [["train.py:7:step"], ["train.py:7:step", "model.py:3:forward"]]
    assert len({int(s) for s in rows.column("stack")}) == 2
    freed = ~np.isnan(rows.column("t_free"))
    assert int(freed.sum()) == 1000
    assert rows.column("t_free")[5] == pytest.approx(0.050005)


def test_a_snapshot_in_torch_layout_opens_as_pickle_reads_it(tmp_path):
    path = tmp_path / "torch.pickle"
    held = write_snapshot(path, 20_000)
    with open(path, "rb") as f:
        reference = pickle.load(f)  # the writer writes a real pickle, in torch's shape
    trace = reference["device_traces"][0]
    allocs = [e for e in trace if e["action"] == "alloc"]
    assert len(allocs) == held["allocations"] and set(allocs[0]) == {
        "action", "addr", "size", "stream", "time_us", "frames"}
    run = open_run(path)
    rows = run.tensors.rows
    assert len(rows) == len(allocs)
    assert list(rows.column("nbytes")) == [e["size"] for e in allocs]
    live = np.isnan(rows.column("t_free"))
    assert int(rows.column("nbytes")[live].sum()) == held["live_bytes"]
    first = allocs[0]["frames"]
    assert run.tensors.stack_text(int(rows.column("stack")[0])) == [
        f"{f['filename']}:{f['line']}:{f['name']}" for f in first]
    assert len({int(s) for s in rows.column("stack")}) == held["stacks"]
    # the timeline: every peak and trough of the bytes live, by category
    live_now, live, peak, trough = 0, {}, 0, None
    for entry in trace:
        if entry["action"] == "alloc":
            live[entry["addr"]] = entry["size"]
            live_now += entry["size"]
        elif entry["addr"] in live:
            live_now -= live.pop(entry["addr"])
        peak = max(peak, live_now)
        trough = live_now if trough is None or live_now < trough else trough
    total = run.samples.column("tracked_total")
    assert total.max() == peak and total.min() == trough and total[-1] == live_now
    assert len(total) <= len(trace) // 2 + 1  # in bins, not a point an entry
    np.testing.assert_array_equal(run.samples.column("cat_other"), total)
    assert np.all(np.diff(run.samples.column("t")) >= 0)


CHILD = """
import resource, sys
from memviz.snapshot import open_run
import numpy  # what any open costs, before the file
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n = len(open_run(sys.argv[1]).tensors)
print(n, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


@pytest.mark.parametrize("entries", [600_000])
def test_a_large_snapshot_opens_in_memory_bounded_per_entry(tmp_path, entries):
    """Python's unpickler spends about 660 B of RAM an entry on this layout (1.6 KiB on
    memviz's old import); the walk keeps each entry's columns and a memo slot."""
    path = tmp_path / "large.pickle"
    held = write_snapshot(path, entries)
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    n, grew = (int(v) for v in out.stdout.split())
    assert n == held["allocations"]
    assert grew < 220 * entries, f"{grew / entries:.0f} B an entry"
