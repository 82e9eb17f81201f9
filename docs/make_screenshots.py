"""The screenshots in docs/: the real window on real runs of the default model.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshots.py

docs/screenshot.png is the window after a run; docs/views/*.png are each view.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PySide6.QtCore import Qt

from memviz.core.spec import RunSpec
from memviz.gui.app import make_app
from memviz.gui.main_window import MainWindow

HERE = Path(__file__).parent


def main() -> int:
    app = make_app()
    window = MainWindow()
    window.resize(1400, 900)
    window.show()

    def settle(seconds: float = 0.3) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            window.refresh()
            app.processEvents()
            time.sleep(0.02)

    def run(spec: RunSpec):
        started = window.start_run(spec)
        if started is None:
            raise SystemExit(window.error_banner.text())
        while not started.finished:
            settle(0.1)
        return started

    views = HERE / "views"
    views.mkdir(exist_ok=True)
    window.grab().save(str(views / "empty.png"))
    base = run(RunSpec(model="gpt2-tiny", steps=6, batch_size=2, seq_len=128))
    checkpointed = run(RunSpec(model="gpt2-tiny", steps=6, batch_size=2, seq_len=128,
                               techniques=[{"name": "checkpointing", "params": {}}]))
    # four ranks of ZeRO, simulated in one worker: the Ranks tab's bars
    sharded = run(RunSpec(model="gpt2-tiny", steps=2, batch_size=4, seq_len=128, simulate=True,
                          techniques=[{"name": "zero", "params": {"world_size": 4}}]))
    # a small comparison for its tab (predictions simulated first)
    panel = window.run_panel
    panel.batch_size.setValue(2)
    panel.seq_len.setValue(128)
    panel.steps.setValue(3)
    sets = "amp\namp,checkpointing\noptimizer=sgd"
    window.comparison_view.sets_edit.setPlainText(sets)
    comparison = window.start_comparison(sets, False)
    while comparison is not None and not comparison.finished:
        settle(0.2)
    window.select_run(base.run_id)
    settle()
    window.grab().save(str(HERE / "screenshot.png"))
    for index in range(window.tabs.count()):
        name = window.tabs.tabText(index)
        window.tabs.setCurrentIndex(index)
        if name == "Ranks":
            window.select_run(sharded.run_id)
        if name == "Diff two runs":
            window.select_run(checkpointed.run_id)
            window.run_list.item(0).setCheckState(Qt.CheckState.Checked)
        settle()
        slug = name.lower().replace(" ", "-")
        window.grab().save(str(views / f"{slug}.png"))
        if name == "Diff two runs":
            window.run_list.item(0).setCheckState(Qt.CheckState.Unchecked)
        window.select_run(base.run_id)
    window.run_list.item(0).setCheckState(Qt.CheckState.Checked)
    window.select_run(checkpointed.run_id)
    window.tabs.setCurrentIndex(0)
    settle()
    window.grab().save(str(views / "overlay.png"))
    window.external.wait_for_programs()
    settle()
    window.external.dialog.grab().save(str(views / "wait-for-a-program.png"))
    program_run(window, settle, views)
    pytorch_snapshot(window, settle, views)
    gpu_views(window, settle, views)
    attached_process(window, settle, views)
    window.close()
    return 0


def attached_process(window, settle, views: Path) -> None:
    """A training loop that was running before memviz: attached to by its process id,
    followed live."""
    import subprocess

    proc = subprocess.Popen([sys.executable, str(HERE.parent / "examples" / "train_loop.py"),
                             "--steps", "100000"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(8)  # the loop builds its model and starts training on its own
        before = set(window.runs)
        window.external.attach_process(proc.pid)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not set(window.runs) - before:
            settle(0.1)
        arrived = [window.runs[i] for i in set(window.runs) - before]
        while arrived and time.monotonic() < deadline and len(arrived[0].steps) < 6:
            settle(0.1)
        if arrived:
            window.select_run(arrived[0].run_id)
        window.tabs.setCurrentIndex(0)
        settle()
        window.grab().save(str(views / "attached-process.png"))
    finally:
        proc.kill()
        proc.wait()


def gpu_views(window, settle, views: Path) -> None:
    """The GPU without a GPU: a simulated CUDA run's segments with an OOM predicted for
    a device just too small, and a snapshot in PyTorch's layout (stacks="all") that ran
    out of memory with 30 MiB cached free in pieces."""
    import tempfile

    sys.path.insert(0, str(HERE.parent))
    from memviz.core.summary import build_summary
    from tests import torch_snapshots

    started = window.start_run(RunSpec(model="gpt2-tiny", steps=2, batch_size=2, seq_len=128,
                                       device="cuda", simulate=True, detail="all"))
    while not started.finished:
        settle(0.1)
    window.select_run(started.run_id)
    window.tabs.setCurrentWidget(window.segments_view)
    peak = build_summary(started)["simulated_cuda"]["process_peak"]
    window.segments_view.device.setValue((peak >> 20) - 1)
    settle()
    window.grab().save(str(views / "segments-simulated.png"))
    path = torch_snapshots.write(Path(tempfile.mkdtemp()) / "step.pickle")
    run = window.open_snapshot(str(path))
    window.select_run(run.run_id)
    window.segments_view.device.setValue(0)
    settle()
    window.grab().save(str(views / "segments-snapshot.png"))


def pytorch_snapshot(window, settle, views: Path) -> None:
    """A snapshot torch wrote (its layout, 200,000 trace entries), opened: its timeline
    is the bytes live over the trace."""
    import tempfile

    sys.path.insert(0, str(HERE.parent))
    from benchmarks.torch_snapshot_file import write_snapshot

    path = Path(tempfile.mkdtemp()) / "snapshot.pickle"
    write_snapshot(path, 200_000)
    window.open_snapshot(str(path))
    while window.background_opens.pending():  # a large one opens in the background
        settle(0.1)
    settle()
    window.select_run(max(window.runs))
    window.tabs.setCurrentIndex(0)
    settle()
    window.grab().save(str(views / "pytorch-snapshot.png"))


def program_run(window, settle, views: Path) -> None:
    """A user's own training loop connecting to the window, shown while it runs."""
    import os
    import subprocess

    command = window.external.dialog.command.text()
    env_part, _, rest = command.partition(" ")
    key, _, token = env_part.partition("=")
    args = rest.split()[1:rest.split().index("--")]
    before = set(window.runs)
    proc = subprocess.Popen([sys.executable, "-m", "memviz", *args, "--", sys.executable,
                             str(HERE.parent / "examples" / "train_loop.py"), "--steps", "30"],
                            env={**os.environ, key: token}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    window.external.dialog.hide()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not set(window.runs) - before:
        settle(0.1)
    arrived = [window.runs[i] for i in set(window.runs) - before]
    while arrived and time.monotonic() < deadline and len(arrived[0].steps) < 8:
        settle(0.1)
    window.tabs.setCurrentIndex(0)
    settle()
    window.grab().save(str(views / "program-live.png"))
    proc.wait(120)


if __name__ == "__main__":
    sys.exit(main())
