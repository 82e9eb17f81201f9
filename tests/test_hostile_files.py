"""Every malformed or hostile file is one printable line at every entry point, costs
bounded memory, and never runs anything (cases in tests/hostile_files.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from memviz.core.run import Run
from memviz.core.spec import RunSpec
from memviz.session import WorkerSession
from memviz.snapshot import Recorder

from .conftest import WORKER_DEADLINE_S
from .hostile_files import CASES

# What opening one file may cost at most, over the process's memory before it: a
# floor, and a few bytes of memory per byte of file (measured over the floor: the
# event bomb about 4 MiB; three million empty dicts in a 6 MB pickle, 7 MiB — Python's
# unpickler spent 40 bytes a byte on them; a flood of one-item maps 94 MiB for 7 MB,
# the most of any case).
MEMORY_FLOOR = 64 << 20
MEMORY_PER_FILE_BYTE = 16
ESCAPE = "\x1b"


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory):
    """(the good recording, {case name: its file})"""
    folder = tmp_path_factory.mktemp("hostile")
    good = folder / "good.memviz"
    run = Run(RunSpec(model="gpt2-tiny", steps=1, batch_size=1, seq_len=32))
    session = WorkerSession(run, recorder=Recorder(good, run.spec.to_dict()))
    session.start()
    assert session.wait(WORKER_DEADLINE_S) and run.state == "finished", run.error
    return good, {case.name: case.build(good, folder) for case in CASES}


@pytest.fixture(scope="module")
def verdicts(hostile_files):
    good, files = hostile_files
    out = subprocess.run([sys.executable, "-m", "tests.open_hostile", str(good),
                          str(good.parent), *(f"{k}={v}" for k, v in files.items())],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return {v["name"]: v for v in json.loads(out.stdout)}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_hostile_file_is_one_line_at_every_entry_point(verdicts, case):
    verdict = verdicts[case.name]
    opened = verdict["open"]
    assert not opened.startswith("ESCAPED"), opened
    assert not verdict["ran_code"]
    export_code, export_err = verdict["export"]
    diff_code, diff_err = verdict["diff"]
    if case.refusal is None:
        assert opened == "opened"
        assert ESCAPE not in verdict["shown"]
        assert export_code == 0 and diff_code == 0, (export_err, diff_err)
    else:
        assert case.refusal in opened, opened
        for code, err in ((export_code, export_err), (diff_code, diff_err)):
            assert code == 2, err
            assert err.count("\n") == 1 and err.startswith("memviz: error: "), err
            assert case.refusal in err
            assert "Traceback" not in err
    assert ESCAPE not in export_err + diff_err + opened
    bound = MEMORY_FLOOR + MEMORY_PER_FILE_BYTE * verdict["file_bytes"]
    assert verdict["rss_delta"] < bound, f"{verdict['rss_delta'] >> 20} MiB"


def test_a_name_never_changes_which_file_opens(verdicts, hostile_files):
    """``run#1.memviz`` is not ``run``, ``evil%41.memviz`` is not ``evilA.memviz``:
    each opened itself (above), read-only, and nothing appeared beside it."""
    good, _ = hostile_files
    names = set(os.listdir(good.parent))
    assert not names & {"run", "evilA.memviz", "run?mode=rwc.memviz-wal"}
    assert not any(n.endswith(("-wal", "-shm")) for n in names), sorted(names)
    for case in ("name-with-hash", "name-with-percent", "name-with-question-mark"):
        assert verdicts[case]["open"] == "opened"


def test_the_window_refuses_or_opens_every_hostile_file_and_keeps_refreshing(
        hostile_files, qtbot):
    from memviz.gui.app import make_app
    from memviz.gui.main_window import MainWindow

    make_app()
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    _, files = hostile_files
    for case in CASES:
        run = _opened(window, qtbot, str(files[case.name]))
        if case.refusal is None:
            assert run is not None, window.error_banner.text()
            window.select_run(run.run_id)
            for _ in range(3):
                window.refresh()  # every view draws the opened run
            assert ESCAPE not in window.state_label.text()
        else:
            assert run is None
            text = window.error_banner.text()
            assert text.startswith("Cannot open ") and case.refusal in text
            assert ESCAPE not in text and "\n" not in text
            window.refresh()
    window.close()


def _opened(window, qtbot, path: str):
    """The run ``path`` opens as, or None; a file large enough to be read in the
    background is waited for (the banner says why it was refused once it is read)."""
    before = set(window.runs)
    run = window.open_snapshot(path)
    opens = window.opener.background_opens
    if run is None and opens.pending():
        qtbot.waitUntil(lambda: not opens.pending(), timeout=120_000)
        window.refresh()  # takes what the background read
        new = set(window.runs) - before
        run = window.runs[new.pop()] if new else None
    return run


ADDRESS_SPACE_CHILD = """
import contextlib, io, resource, sys
from memviz.cli.main import main
import memviz.snapshot.torch_import
with open("/proc/self/status") as f:
    used = next(int(line.split()[1]) << 10 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (used + (64 << 20), resource.RLIM_INFINITY))
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(["export", sys.argv[1], "--to", "torch-json", "-o", sys.argv[2], "--force"])
sys.stdout.write(f"{code}\\n{err.getvalue()}")
"""


def test_a_snapshot_larger_than_the_address_space_left_is_one_line(tmp_path):
    """Under ``ulimit -v``, mapping a 1 GiB pickle fails: one line, exit 2."""
    big = tmp_path / "big.pickle"
    with open(big, "wb") as f:
        f.write(b"\x80\x04")
        f.truncate(1 << 30)  # sparse: no disk spent
    out = subprocess.run([sys.executable, "-c", ADDRESS_SPACE_CHILD, str(big),
                          str(tmp_path / "out.json")], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    code, err = out.stdout.split("\n", 1)
    assert code == "2", err
    assert err.startswith("memviz: error: ") and err.count("\n") == 1, err
    assert "cannot read it" in err and "Traceback" not in err


def test_lone_surrogates_in_a_snapshots_names_are_written_by_every_export(hostile_files,
                                                                           tmp_path):
    _, files = hostile_files
    path = files["lone-surrogates"]
    for kind in ("folded", "csv", "html", "chrome-trace"):
        done = subprocess.run([sys.executable, "-m", "memviz", "export", str(path), "--to",
                               kind, "-o", str(tmp_path / f"out-{kind}")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (kind, done.stderr)
    folded = (tmp_path / "out-folded").read_text()
    assert "train\ufffd.py:3:step\ufffd" in folded
    done = subprocess.run([sys.executable, "-m", "memviz", "diff", str(path), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
