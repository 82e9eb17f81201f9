"""Shared helpers: run a real worker to its end, with a deadline."""

from __future__ import annotations

import os
import sys
import tempfile

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The window records every run; in tests, into a throwaway folder, never the user's.
os.environ["MEMVIZ_RUNS_DIR"] = tempfile.mkdtemp(prefix="memviz-test-runs-")

from memviz.core.run import Run
from memviz.core.spec import RunSpec
from memviz.session import WorkerSession

WORKER_DEADLINE_S = 180


@pytest.fixture(autouse=True, scope="module")
def _windows_closed_after_each_module():
    """A window left open keeps cyclic collection on the GUI thread's timer
    (memviz.gui.gui_thread_gc), which later tests without an event loop never run:
    whatever a test module leaves open is closed after it (a module may share one
    window between its tests)."""
    yield
    if "memviz.gui.main_window" not in sys.modules:
        return
    from PySide6.QtWidgets import QApplication

    from memviz.gui.main_window import MainWindow

    for widget in QApplication.topLevelWidgets():
        if isinstance(widget, MainWindow):
            widget.close()


def run_worker(timeout: float = WORKER_DEADLINE_S, **spec_fields) -> tuple[Run, WorkerSession]:
    """Run a real worker process with this spec until it ends."""
    run = Run(RunSpec(**spec_fields))
    session = WorkerSession(run)
    session.start()
    if not session.wait(timeout):
        session.stop()
        pytest.fail(f"worker did not finish within {timeout} s; log: {run.log[-5:]}")
    return run, session


@pytest.fixture(scope="session")
def gpt2_train_run() -> Run:
    """One real two-step training run of the default model, shared by several tests."""
    run, _ = run_worker(model="gpt2-tiny", mode="train", steps=2, sample_hz=50)
    assert run.state == "finished", run.error
    return run
