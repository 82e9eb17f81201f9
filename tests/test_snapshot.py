"""The .memviz file: real runs recorded and reopened; crashes; bad and hostile files."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memviz.core.categories import CATEGORIES
from memviz.core.run import Run
from memviz.core.spec import RunSpec
from memviz.session import WorkerSession
from memviz.snapshot import Recorder, SnapshotError, codec, open_run
from memviz.snapshot.schema import SCHEMA_VERSION

from .conftest import WORKER_DEADLINE_S


def _recorded_run(path, **spec_fields) -> Run:
    run = Run(RunSpec(**spec_fields))
    session = WorkerSession(run, recorder=Recorder(path, run.spec.to_dict()))
    session.start()
    assert session.wait(WORKER_DEADLINE_S), run.log[-5:]
    return run


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    path = tmp_path_factory.mktemp("snap") / "run.memviz"
    run = _recorded_run(path, model="gpt2-tiny", steps=2, batch_size=2, seq_len=64,
                        track="tensors+stacks")
    assert run.state == "finished", run.error
    return path, run


def test_a_reopened_run_equals_the_live_one(recorded):
    path, live = recorded
    back = open_run(path)
    assert back.state == "finished"
    assert back.spec == live.spec
    assert back.model == live.model and back.environment == live.environment
    for name in ("t", "rss", "uss", "peak_rss", "tracked_total", "cat_activation"):
        np.testing.assert_array_equal(back.samples.column(name), live.samples.column(name))
    assert [(p.step, p.name, p.begin, p.end) for p in back.phases] == \
        [(p.step, p.name, p.begin, p.end) for p in live.phases]
    assert back.steps == live.steps
    assert len(back.tensors) == len(live.tensors) > 500
    for name in back.tensors.rows.names:
        np.testing.assert_allclose(back.tensors.rows.column(name),
                                   live.tensors.rows.column(name), atol=1e-9, err_msg=name)
    assert back.tensors.strings == live.tensors.strings
    assert back.tensors.stacks == live.tensors.stacks
    assert back.tensors.marks == live.tensors.marks
    assert back.worker_summary == live.worker_summary


def test_the_file_is_plain_sqlite_for_other_tools(recorded):
    path, live = recorded
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM samples").fetchone()[0] == len(live.samples)
    steps = db.execute("SELECT step, loss FROM steps ORDER BY step").fetchall()
    assert steps == [(s.step, s.loss) for s in live.steps]
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    assert json.loads(meta["schema_version"]) == SCHEMA_VERSION
    assert json.loads(meta["state"]) == "finished"


def test_tensor_events_take_under_32_bytes_each(recorded):
    path, live = recorded
    db = sqlite3.connect(path)
    stored, events = db.execute(
        "SELECT sum(length(columns)), sum(count) FROM event_batches").fetchone()
    assert events == live.tensors.event_count
    assert stored / events < 32, stored / events


def test_recording_refuses_to_overwrite(recorded):
    path, _ = recorded
    with pytest.raises(FileExistsError, match="exists"):
        Recorder(path, RunSpec().to_dict())


def test_a_killed_worker_leaves_a_readable_file(tmp_path):
    path = tmp_path / "killed.memviz"
    run = Run(RunSpec(model="gpt2-tiny", steps=10_000, batch_size=1, seq_len=32))
    session = WorkerSession(run, recorder=Recorder(path, run.spec.to_dict()))
    session.start()
    deadline = time.monotonic() + WORKER_DEADLINE_S
    while (len(run.steps) < 2 or len(run.samples) <= 10) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(session.pid, signal.SIGKILL)
    assert session.wait(30)
    back = open_run(path)
    assert back.state == "failed" and "SIGKILL" in back.error["message"]
    assert len(back.steps) >= 2
    assert len(back.samples) > 10


def test_a_killed_recorder_process_leaves_a_readable_file(tmp_path):
    path = tmp_path / "cli.memviz"
    proc = subprocess.Popen([sys.executable, "-m", "memviz", "run", "--steps", "10000",
                             "--batch-size", "1", "--seq-len", "32", "-o", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + WORKER_DEADLINE_S
    steps = 0
    while time.monotonic() < deadline and steps < 3 and proc.poll() is None:
        time.sleep(0.2)
        if not path.exists():  # connecting now would create it, and the run would refuse it
            continue
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                steps = db.execute("SELECT count(*) FROM steps").fetchone()[0]
        except sqlite3.Error:
            steps = 0
    os.kill(proc.pid, signal.SIGKILL)  # the recording process, not the worker
    proc.wait(30)
    back = open_run(path)
    assert len(back.steps) >= 3
    assert back.state == "stopped"  # it never said it finished


@pytest.mark.parametrize("content,reason", [
    (b"", "not an SQLite file"),
    (b"hello, world" * 100, "not an SQLite file"),
    (b"SQLite format 3\x00" + b"\x00" * 200, "corrupt database"),
])
def test_files_that_are_not_snapshots_are_refused(tmp_path, content, reason):
    path = tmp_path / "bad.memviz"
    path.write_bytes(content)
    with pytest.raises(SnapshotError, match=reason):
        open_run(path)


def test_a_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(SnapshotError, match="not a memviz snapshot"):
        open_run(path)


def test_a_newer_schema_says_to_update(recorded, tmp_path):
    path = tmp_path / "newer.memviz"
    path.write_bytes(recorded[0].read_bytes())
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    with pytest.raises(SnapshotError, match=r"newer memviz .* update memviz"):
        open_run(path)


def test_a_truncated_snapshot_is_refused_cleanly(recorded, tmp_path):
    data = recorded[0].read_bytes()
    path = tmp_path / "cut.memviz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SnapshotError):
        open_run(path)


def test_a_damaged_event_batch_is_refused_cleanly(recorded, tmp_path):
    path = tmp_path / "damaged.memviz"
    path.write_bytes(recorded[0].read_bytes())
    db = sqlite3.connect(path)
    db.execute("UPDATE event_batches SET columns = x'00ff00ff' WHERE batch = 0")
    db.commit()
    with pytest.raises(SnapshotError, match="damaged snapshot"):
        open_run(path)


@given(st.binary(min_size=1, max_size=4096))
@settings(max_examples=150, deadline=None)
def test_random_event_blobs_never_crash_the_decoder(blob):
    with contextlib.suppress(codec.CodecError):
        codec.decode(blob)


def test_a_decompression_bomb_is_refused():
    import zlib

    import msgpack

    bomb = zlib.compress(b"\0" * (64 << 20))
    blob = msgpack.packb({"n": 4, "c": {name: bomb for name in codec.DTYPES}})
    with pytest.raises(codec.CodecError, match="expected"):
        codec.decode(blob)


class _PlainOnly(pickle.Unpickler):
    """Refuses every class: loading succeeds only if the pickle is plain containers."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"not plain data: {module}.{name}")


def test_torch_export_is_read_by_torch_memory_viz(recorded, tmp_path):
    path, live = recorded
    out = tmp_path / "run.pickle"
    proc = subprocess.run([sys.executable, "-m", "memviz", "export", str(path), "--to",
                           "torch-pickle", "-o", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    with open(out, "rb") as f:
        assert f.read(2) == b"\x80\x04"  # protocol 4: the web viewer reads 2 to 4
    with open(out, "rb") as f:
        data = _PlainOnly(f).load()
    trace = data["device_traces"][0]
    assert sum(e["action"] == "alloc" for e in trace) == len(live.tensors)
    assert trace[0]["category"] == "unknown"
    live_end = live.samples.column("tracked_total")[-1]
    assert data["segments"][0]["allocated_size"] == live_end
    for action in ("stats", "trace"):
        run = subprocess.run([sys.executable, "-m", "torch.cuda._memory_viz", action, str(out)],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-500:]
        assert run.stdout.strip()
    for action in ("trace_plot", "segment_plot"):
        html = tmp_path / f"{action}.html"
        run = subprocess.run([sys.executable, "-m", "torch.cuda._memory_viz", action, str(out),
                              "-o", str(html)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-500:]
        assert html.stat().st_size > 10_000


def test_torch_json_export_and_refusals(recorded, tmp_path):
    path, live = recorded
    out = tmp_path / "run.json"
    base = [sys.executable, "-m", "memviz", "export"]
    assert subprocess.run([*base, str(path), "--to", "torch-json", "-o", str(out)],
                          capture_output=True, timeout=120).returncode == 0
    data = json.loads(out.read_text())
    assert sum(e["action"] == "alloc" for e in data["device_traces"][0]) == len(live.tensors)
    again = subprocess.run([*base, str(path), "--to", "torch-json", "-o", str(out)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "exists" in again.stderr
    bad = tmp_path / "bad.memviz"
    bad.write_bytes(b"nope")
    refused = subprocess.run([*base, str(bad), "--to", "torch-json", "-o", str(tmp_path / "x")],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "not a memviz snapshot" in refused.stderr


class _Hostile:
    """Unpickling this runs a shell command that creates a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_hostile_pickle_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pickle"
    evil.write_bytes(pickle.dumps({"segments": [], "device_traces": [[_Hostile(marker)]]},
                                  protocol=protocol))
    with pytest.raises(SnapshotError, match=r"refused: the pickle asks for (posix|os)\.system"):
        open_run(evil)
    assert not marker.exists()
    # the CLI says the same and exits non-zero, and still nothing runs
    proc = subprocess.run([sys.executable, "-m", "memviz", "export", str(evil), "--to",
                           "torch-json", "-o", str(tmp_path / "out.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "refused" in proc.stderr
    assert not marker.exists()


def test_a_pytorch_snapshot_opens_with_categories_and_pre_existing_blocks(tmp_path):
    snap = {
        "segments": [{"device": 0, "address": 1 << 40, "total_size": 4 << 20,
                      "allocated_size": 3072, "active_size": 3072, "requested_size": 3000,
                      "stream": 0, "segment_type": "large", "blocks": [
                          {"address": (1 << 40), "size": 2048, "state": "active_allocated"},
                          {"address": (1 << 40) + 2048, "size": 1024,
                           "state": "active_allocated"},
                          {"address": (1 << 40) + 3072, "size": (4 << 20) - 3072,
                           "state": "inactive"}]}],
        "device_traces": [[
            {"action": "alloc", "addr": (1 << 40) + 2048, "size": 1024, "time_us": 1_000_000,
             "category": "activation"},
            {"action": "alloc", "addr": (1 << 40) + 8192, "size": 4096, "time_us": 1_500_000,
             "category": "unknown"},
            {"action": "free_requested", "addr": (1 << 40) + 8192, "size": 4096,
             "time_us": 2_000_000},
            {"action": "free_completed", "addr": (1 << 40) + 8192, "size": 4096,
             "time_us": 2_000_000},
        ]],
    }
    for path, data in ((tmp_path / "s.pickle", pickle.dumps(snap, protocol=4)),
                       (tmp_path / "s.json", json.dumps(snap).encode())):
        path.write_bytes(data)
        run = open_run(path)
        rows = run.tensors.rows
        assert len(rows) == 3  # the pre-existing 2048-byte block, then two traced allocations
        assert list(rows.column("nbytes")) == [2048, 1024, 4096]
        cats = [CATEGORIES[int(c)] for c in rows.column("category")]
        assert cats == ["other", "activation", "other"]
        np.testing.assert_allclose(rows.column("t_alloc"), [0.0, 0.0, 0.5])
        np.testing.assert_allclose(rows.column("t_free")[2], 1.0)
        assert np.isnan(rows.column("t_free")[:2]).all()


def test_export_then_import_keeps_every_allocation(recorded, tmp_path):
    path, live = recorded
    from memviz.snapshot.torch_export import write

    out = tmp_path / "round.pickle"
    write(open_run(path), out, "torch-pickle")
    back = open_run(out)
    assert len(back.tensors) == len(live.tensors)
    np.testing.assert_array_equal(np.sort(back.tensors.rows.column("nbytes")),
                                  np.sort(live.tensors.rows.column("nbytes")))
    assert back.samples.column("tracked_total")[-1] == live.samples.column("tracked_total")[-1]


def test_chrome_trace_has_memory_counters_and_phase_slices(recorded, tmp_path):
    path, live = recorded
    out = tmp_path / "trace.json"
    assert subprocess.run([sys.executable, "-m", "memviz", "export", str(path), "--to",
                           "chrome-trace", "-o", str(out)], timeout=120).returncode == 0
    events = json.loads(out.read_text())["traceEvents"]
    counters = [e for e in events if e["ph"] == "C"]
    memory = [e for e in counters if e["name"] == "memory (bytes)"]
    assert len(memory) == len(live.samples)
    # on the wall clock, as torch.profiler's traces are (microseconds since the epoch)
    assert memory[0]["ts"] == pytest.approx((live.t0_wall + live.samples.column("t")[0]) * 1e6,
                                            abs=1)
    assert abs(memory[0]["ts"] / 1e6 - time.time()) < 24 * 3600
    assert {"rss", "uss", "peak_rss"} <= set(memory[-1]["args"])
    by_cat = [e for e in counters if e["name"] == "tracked by category (bytes)"]
    assert by_cat and by_cat[-1]["args"]["parameter"] == live.model["parameter_bytes"]
    slices = [e for e in events if e["ph"] == "X"]
    phases = [e for e in slices if e["cat"] == "phase"]
    assert [e["name"] for e in phases if e["args"]["step"] == 0] == \
        ["forward", "backward", "optimizer"]
    assert all(e["dur"] > 0 for e in slices)
    assert len([e for e in slices if e["cat"] == "step"]) == len(live.steps)


def test_csv_export_has_a_row_per_sample_allocation_and_step(recorded, tmp_path):
    import csv

    path, live = recorded
    out = tmp_path / "csv"
    assert subprocess.run([sys.executable, "-m", "memviz", "export", str(path), "--to", "csv",
                           "-o", str(out)], timeout=120).returncode == 0
    def rows(name):
        with open(out / name, newline="") as f:
            return list(csv.DictReader(f))
    assert len(rows("samples.csv")) == len(live.samples)
    tensors = rows("tensor_events.csv")
    assert len(tensors) == len(live.tensors)
    assert {r["category"] for r in tensors} >= {"parameter", "activation", "gradient"}
    assert [float(r["loss"]) for r in rows("steps.csv")] == [s.loss for s in live.steps]
    summary = {r["key"]: r["value"] for r in rows("summary.csv")}
    assert int(summary["peak.tracked_bytes"]) == live.worker_summary["tracking"]["tracked_bytes"]


def test_diff_finds_what_grew_with_the_batch(recorded, tmp_path):
    path, _live = recorded
    bigger = tmp_path / "bigger.memviz"
    _recorded_run(bigger, model="gpt2-tiny", steps=2, batch_size=4, seq_len=64,
                  track="tensors+stacks")
    proc = subprocess.run([sys.executable, "-m", "memviz", "diff", str(path), str(bigger),
                           "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    categories = {r["name"]: r for r in result["categories"]}
    activation = categories["activation"]
    # batch 2 → 4: the activations kept for backward double (within 15 %)
    assert 1.7 < activation["b"] / activation["a"] < 2.3
    assert result["categories"][0]["name"] == "activation"  # the largest change comes first
    assert "parameter" not in categories or categories["parameter"]["delta"] == 0
    assert result["b"]["tracked_peak_bytes"] > result["a"]["tracked_peak_bytes"]
    assert any(r["name"].startswith("transformer.h.") and r["delta"] > 0
               for r in result["modules"])
    assert any(" @ " in r["name"] for r in result["sites"])  # op and the first stack frame
    same = subprocess.run([sys.executable, "-m", "memviz", "diff", str(path), str(path),
                           "--json"], capture_output=True, text=True, timeout=120)
    assert all(r["delta"] == 0 for key in ("categories", "modules", "sites")
               for r in json.loads(same.stdout)[key])
    text = subprocess.run([sys.executable, "-m", "memviz", "diff", str(path), str(bigger)],
                          capture_output=True, text=True, timeout=120).stdout
    assert "by category" in text and "activation" in text


def test_html_report_is_self_contained_and_shows_the_run(recorded, tmp_path):
    import re

    path, live = recorded
    out = tmp_path / "report.html"
    assert subprocess.run([sys.executable, "-m", "memviz", "export", str(path), "--to", "html",
                           "-o", str(out)], timeout=120).returncode == 0
    page = out.read_text()
    assert "<script" not in page and "@import" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", page)
    assert "http" not in page  # nothing fetched, not even a font
    assert page.count("<svg") == 1 and "<polygon" in page and "<polyline" in page
    assert "activations (saved for backward)" in page
    for step in live.steps:
        assert f"<td>{step.loss:.4f}</td>" in page


@given(st.binary(min_size=1, max_size=3000))
@settings(max_examples=60, deadline=None)
def test_random_files_are_refused_cleanly(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "random.memviz"
    path.write_bytes(data)
    try:
        open_run(path)
    except SnapshotError as exc:
        assert str(exc)


def test_imported_pytorch_stacks_reach_the_inspector(tmp_path):
    from memviz.gui.inspector import describe

    snap = {"segments": [], "device_traces": [[
        {"action": "alloc", "addr": 4096, "size": 512, "time_us": 10, "frames": [
            {"filename": "train.py", "line": 42, "name": "forward"},
            {"filename": "train.py", "line": 7, "name": "main"}]}]]}
    path = tmp_path / "stacks.pickle"
    path.write_bytes(pickle.dumps(snap, protocol=4))
    run = open_run(path)
    assert describe(run, 0)["stack"] == "train.py:42:forward\ntrain.py:7:main"


def test_a_schema_1_file_with_json_categories_still_opens_the_same(recorded, tmp_path):
    """Before schema 2 each sample's categories were one JSON text."""
    import sqlite3

    from memviz.core.categories import CATEGORIES, SAMPLE_PREFIX
    from memviz.snapshot.schema import DDL_V1

    path, live = recorded
    old = tmp_path / "schema1.memviz"
    db = sqlite3.connect(old)  # written as schema 1 wrote it, rows copied from the run
    db.executescript(DDL_V1)
    db.execute("ATTACH DATABASE ? AS new", (str(path),))
    v1_columns = [row[1] for row in db.execute("PRAGMA main.table_info(samples)")]
    for table in ("meta", "phases", "steps", "log", "marks", "strings", "stacks",
                  "event_batches", "cuda_memory"):
        db.execute(f"INSERT INTO main.{table} SELECT * FROM new.{table}")
    shared = ", ".join(c for c in v1_columns if c != "by_category")
    db.execute(f"INSERT INTO main.samples ({shared}) SELECT {shared} FROM new.samples")
    rows = db.execute("SELECT rowid, " + ", ".join(SAMPLE_PREFIX + c for c in CATEGORIES)
                      + " FROM new.samples ORDER BY rowid").fetchall()
    for rowid, *values in rows:
        cats = {c: int(v) for c, v in zip(CATEGORIES, values, strict=True) if v}
        db.execute("UPDATE main.samples SET by_category = ? WHERE rowid = ?",
                   (json.dumps(cats) if cats else None, rowid))
    db.execute("UPDATE main.meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.execute("DETACH DATABASE new")
    db.close()
    back = open_run(old)
    for name in ("t", "rss", "tracked_total", *(SAMPLE_PREFIX + c for c in CATEGORIES)):
        np.testing.assert_array_equal(back.samples.column(name), live.samples.column(name),
                                      err_msg=name)


def test_a_time_window_loads_only_what_it_shows_and_the_same_live_bytes(recorded):
    path, _live = recorded
    full = open_run(path)
    step1 = [p for p in full.phases if p.step == 1]
    t0, t1 = min(p.begin for p in step1), full.steps[1].t  # step 1, to its step_done
    window = open_run(path, t_range=(t0, t1))
    t = window.samples.column("t")
    assert len(t) and t.min() >= t0 and t.max() <= t1
    assert {p.step for p in window.phases} == {1}
    assert [s.step for s in window.steps] == [1]
    assert 0 < len(window.tensors) < len(full.tensors)
    nbytes_full = full.tensors.rows.column("nbytes")
    nbytes_window = window.tensors.rows.column("nbytes")
    for moment in np.linspace(t0, t1, 7):  # every moment in the window: the same live bytes
        assert nbytes_window[window.tensors.live_at(moment)].sum() == \
            nbytes_full[full.tensors.live_at(moment)].sum() > 0


def _events(rows: list[tuple]) -> dict:
    """Tensor events from (t, id, kind, nbytes, category) rows."""
    t, ids, kind, nbytes, category = (np.array(c) for c in zip(*rows, strict=True))
    n = len(t)
    cols = {"t": t.astype(float), "id": ids.astype(np.int64), "kind": kind.astype(np.uint8),
            "nbytes": nbytes.astype(np.int64), "category": category.astype(np.uint8),
            "offset": np.zeros(n, np.int64), "phase": np.zeros(n, np.uint8)}
    for name in ("dtype", "shape", "device", "module", "op", "step", "stack"):
        cols[name] = np.zeros(n, np.int32)
    return cols


def test_a_window_late_in_a_run_keeps_what_was_live_with_its_category_then(tmp_path):
    """Many batches before the window: what is live at its start comes from the batch
    that made it, retagged as it was by then; what was freed before it never shows."""
    act, tmp, opt = (CATEGORIES.index(c) for c in ("activation", "temporary",
                                                    "optimizer_state"))
    path = tmp_path / "late.memviz"
    recorder = Recorder(path, RunSpec().to_dict())
    recorder.write([{"type": "strings", "entries": [[k, 0, "x"] for k in
                                                    ("dtype", "shape", "device", "module",
                                                     "op")]}])
    rows = [(1.0, 0, 0, 100, tmp), (1.5, 1, 0, 200, tmp), (1.6, 2, 0, 400, opt)]
    rows += [(2.0, 1, 2, 200, act), (2.5, 0, 1, 100, tmp)]  # 1 becomes an activation; 0 goes
    next_id = 3
    for k in range(200):  # filler: short-lived, in many batches of their own
        rows += [(3.0 + k * 0.01, next_id, 0, 8, tmp), (3.0 + k * 0.01 + 0.001, next_id, 1, 8, 0)]
        next_id += 1
    rows += [(9.5, next_id, 0, 800, act), (9.6, 2, 1, 400, opt)]
    for start in range(0, len(rows), 16):  # written in batches of 16 events
        recorder.write([{"type": "tensor_events", "columns": _events(rows[start:start + 16])}])
        recorder._flush_events()
    recorder.finish("finished")

    window = open_run(path, tensors_window=(8.0, 10.0))
    assert window.tensors_window == (8.0, 10.0)
    log = window.tensors.rows
    sizes = log.column("nbytes").tolist()
    assert sorted(sizes) == [200, 400, 800]  # 0 and every filler were freed before 8 s
    at_start = {n: CATEGORIES[c] for n, c in zip(sizes, log.column("category"), strict=True)}
    assert at_start[400] == "optimizer_state" and at_start[200] == "activation"
    live = window.tensors.live_at(8.0)
    assert sorted(log.column("nbytes")[live].tolist()) == [200, 400]
    assert window.tensors.live_at(9.7).size == 2  # 2 was freed at 9.6
    # the whole timeline is there; only the allocations are a window
    assert window.samples is not None and open_run(path).tensors.rows.column(
        "nbytes").size == next_id + 1
