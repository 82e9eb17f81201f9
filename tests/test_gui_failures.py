"""The window when memory runs out or a file comes from elsewhere: real workers, real
widgets, offscreen."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PySide6.QtCore import Qt

from memviz.core.spec import RunSpec
from memviz.gui.app import make_app
from memviz.gui.main_window import MainWindow
from memviz.session import WorkerSession
from memviz.snapshot import Recorder

from .conftest import WORKER_DEADLINE_S

WAIT_MS = WORKER_DEADLINE_S * 1000


@pytest.fixture
def window(qtbot):
    make_app()
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


def test_a_run_past_its_memory_cap_shows_what_was_live_at_the_last_moment(window, qtbot):
    panel = window.run_panel
    panel.batch_size.setValue(8)
    panel.steps.setValue(50)
    panel.memory_cap.setEditText("450MiB")
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    run = window.current_run()
    qtbot.waitUntil(lambda: run.finished, timeout=WAIT_MS)
    window.refresh()
    assert run.error["kind"] == "oom" and run.error["cap_bytes"] == 450 << 20
    banner = window.error_banner.text()
    assert "over the memory cap of 450 MiB" in banner
    assert "Live at" in banner and "activations (saved for backward)" in banner
    assert window.timeline.cursor.isVisible()  # the cursor sits on the last moment
    window.tabs.setCurrentWidget(window.moment_view)
    qtbot.waitUntil(lambda: window.moment_view.tensors.rowCount() > 0, timeout=10_000)
    categories = [window.moment_view.categories.item(r, 1).text()
                  for r in range(window.moment_view.categories.rowCount())]
    assert "parameters (trainable)" in categories


def test_a_bad_memory_cap_is_refused_before_a_worker_starts(window):
    window.run_panel.memory_cap.setEditText("lots")
    assert window.start_run() is None
    assert "a memory cap is a size like 8GiB" in window.error_banner.text()
    assert not window.sessions


def test_a_pytorch_snapshot_exported_by_memviz_diffs_and_opens_in_every_view(
        window, qtbot, tmp_path):
    path = tmp_path / "run.memviz"
    from memviz.core.run import Run

    run = Run(RunSpec(model="gpt2-tiny", steps=1, batch_size=1, seq_len=32))
    session = WorkerSession(run, recorder=Recorder(path, run.spec.to_dict()))
    session.start()
    assert session.wait(WORKER_DEADLINE_S) and run.state == "finished", run.error
    pickle_path = tmp_path / "run.pickle"
    memviz = [sys.executable, "-m", "memviz"]
    done = subprocess.run([*memviz, "export", str(path), "--to", "torch-pickle", "-o",
                           str(pickle_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    diff = subprocess.run([*memviz, "diff", str(pickle_path), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert diff.returncode == 0, diff.stderr
    assert "by module" in diff.stdout and "Traceback" not in diff.stderr
    imported = window.open_snapshot(str(pickle_path))
    assert imported is not None, window.error_banner.text()
    window.select_run(imported.run_id)
    window.refresh()
    window.tabs.setCurrentWidget(window.moment_view)
    window.moment_view.jump_to_peak()
    qtbot.waitUntil(lambda: window.moment_view.tensors.rowCount() > 0, timeout=10_000)
    modules = [window.moment_view.modules.item(r, 1).text()
               for r in range(window.moment_view.modules.rowCount())]
    # memviz's own export carries each allocation's module: it comes back with it
    assert "transformer.h.0.mlp.c_fc" in modules and "(outside any module)" in modules
    window.tabs.setCurrentWidget(window.modules_view)
    window.refresh()
    assert window.modules_view.topLevelItemCount() == 0  # no module tree; nothing broke


def test_a_large_pytorch_snapshot_opens_in_the_background_with_its_progress(
        window, qtbot, tmp_path, monkeypatch):
    from benchmarks.torch_snapshot_file import write_snapshot
    from memviz.gui import background_open

    path = tmp_path / "large.pickle"
    held = write_snapshot(path, 200_000)
    # a large file here is a few MiB: the threshold (32 MiB) is moved, not the path
    monkeypatch.setattr(background_open, "BACKGROUND_BYTES", 1 << 20)
    assert window.open_snapshot(str(path)) is None  # the run comes later
    assert window.state_label.text().startswith("Opening large.pickle (")
    window.timeline.plot.grab()  # the window keeps drawing meanwhile
    qtbot.waitUntil(lambda: window.current_run() is not None, timeout=WAIT_MS)
    run = window.current_run()
    assert len(run.tensors) == held["allocations"]
    assert window.run_list.count() == 1
    assert window.error_banner.isHidden()

    hostile = tmp_path / "hostile.pickle"
    hostile.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])  # cut short
    assert window.open_snapshot(str(hostile)) is None
    qtbot.waitUntil(lambda: not window.error_banner.isHidden(), timeout=WAIT_MS)
    assert "hostile.pickle" in window.error_banner.text()
    assert "ends early" in window.error_banner.text()
    assert len(window.runs) == 1


def test_cycles_are_collected_on_the_gui_thread_only_while_a_window_is_open(qtbot):
    """A reading thread that collected a cycle holding a Qt object ran its destructor
    off the GUI thread and deadlocked the process against it: while a window is open,
    collection happens on the GUI thread, on a timer."""
    import gc
    import threading
    import weakref

    from memviz.gui import gui_thread_gc

    make_app()
    win = MainWindow()
    qtbot.addWidget(win)
    assert gui_thread_gc.on_gui_thread() and not gc.isenabled()

    class Node:
        pass

    def make_cycle() -> weakref.ref:
        node = Node()
        node.me = node
        return weakref.ref(node)

    collected_in: list[str] = []
    cycle = make_cycle()
    weakref.finalize(cycle(), lambda: collected_in.append(threading.current_thread().name))

    def churn() -> None:  # what a reading thread does: allocate, a lot
        for _ in range(200):
            made = [[] for _ in range(1_000)]  # past the young generation's threshold
            del made

    thread = threading.Thread(target=churn, name="reader")
    thread.start()
    thread.join()
    assert cycle() is not None  # the reader's allocations collected nothing
    kept: list = []

    def collected() -> bool:  # the GUI thread collects once the young objects pile up
        kept.extend([] for _ in range(1_000))
        return cycle() is None

    qtbot.waitUntil(collected, timeout=10_000)
    assert collected_in == [threading.main_thread().name]
    win.close()
    assert gc.isenabled() and not gui_thread_gc.on_gui_thread()


def test_a_pipe_is_refused_and_never_blocks_the_window(window, tmp_path):
    """A FIFO blocks whoever opens it until a writer comes: the window refuses it at
    once, with one line, and the CLI too."""
    fifo = tmp_path / "run.memviz"
    os.mkfifo(fifo)
    assert window.open_snapshot(str(fifo)) is None
    assert window.error_banner.text() == f"Cannot open {fifo}: not a regular file"
    assert not window.runs
    done = subprocess.run([sys.executable, "-m", "memviz", "export", str(fifo), "--to", "csv",
                           "-o", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "not a regular file" in done.stderr


def test_a_large_open_can_be_cancelled_with_esc(window, qtbot, tmp_path, monkeypatch):
    from benchmarks.torch_snapshot_file import write_snapshot
    from memviz.gui import background_open

    path = tmp_path / "large.pickle"
    write_snapshot(path, 400_000)
    monkeypatch.setattr(background_open, "BACKGROUND_BYTES", 1 << 20)
    assert window.open_snapshot(str(path)) is None
    window.stop_run()  # Esc
    assert window.state_label.text() == "Cancelled opening 1 snapshot"
    opener = window.opener.background_opens
    qtbot.waitUntil(lambda: all(o.done for o in opener._open), timeout=WAIT_MS)
    window.refresh()
    assert not window.runs and window.error_banner.isHidden()
    assert not opener.pending()
