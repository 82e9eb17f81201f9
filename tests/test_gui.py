"""The real window, offscreen, driving real worker processes."""

from __future__ import annotations

import os
import signal

import numpy as np
import psutil
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage

from memviz.core.spec import RunSpec
from memviz.gui.app import make_app
from memviz.gui.main_window import MainWindow
from memviz.gui.style import SERIES

WAIT_MS = 180_000


@pytest.fixture
def window(qtbot):
    make_app()
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


def _colour_pixels(image: QImage, colour: str, tolerance: int = 12) -> int:
    image = image.convertToFormat(QImage.Format.Format_RGB32)
    ptr = image.constBits()
    arr = np.frombuffer(ptr, dtype=np.uint8).reshape(image.height(), image.bytesPerLine())
    arr = arr[:, : image.width() * 4].reshape(image.height(), image.width(), 4)
    target = QColor(colour)
    bgr = np.array([target.blue(), target.green(), target.red()])
    close = np.abs(arr[:, :, :3].astype(int) - bgr).max(axis=2) <= tolerance
    return int(close.sum())


def _long_spec() -> RunSpec:
    return RunSpec(model="gpt2-tiny", steps=10_000, batch_size=1, seq_len=32)


def test_run_button_starts_a_worker_and_the_timeline_fills(window, qtbot, tmp_path):
    window.run_panel.steps.setValue(2)
    window.run_panel.batch_size.setValue(2)
    window.run_panel.seq_len.setValue(64)
    qtbot.mouseClick(window.run_panel.run_button, Qt.MouseButton.LeftButton)
    run = window.current_run()
    assert run is not None and run.spec.steps == 2
    assert not window.run_panel.run_button.isEnabled()
    qtbot.waitUntil(lambda: run.finished, timeout=WAIT_MS)
    window.refresh()
    assert run.state == "finished", run.error
    rss_curve = window.timeline._layers[run.run_id].curves["rss"]
    x, y = rss_curve.getData()
    assert len(x) == len(run.samples) > 5
    assert np.nanmax(y) > run.model["parameter_bytes"]
    assert window.step_table.rowCount() == 2
    assert window.step_table.item(1, 0).text() == "1"
    assert window.run_panel.run_button.isEnabled()
    assert "finished" in window.state_label.text()
    assert window.gpu_label.text().startswith("GPU:")
    shot = tmp_path / "window.png"
    assert window.grab().save(str(shot))
    image = QImage(str(shot))
    assert image.width() >= 800
    # the curves are drawn (a legend swatch alone is ~20 pixels); no GPU curve exists here
    assert _colour_pixels(image, SERIES["rss"][1]) > 100
    assert _colour_pixels(image, SERIES["uss"][1]) > 100


def test_stop_ends_the_worker_process(window, qtbot):
    run = window.start_run(_long_spec())
    qtbot.waitUntil(lambda: len(run.steps) >= 1, timeout=WAIT_MS)
    pid = window.sessions[run.run_id].pid
    assert psutil.pid_exists(pid)
    qtbot.mouseClick(window.run_panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: run.finished, timeout=15_000)
    assert window.sessions[run.run_id].wait(10)
    assert run.state == "stopped"
    assert not psutil.pid_exists(pid)
    qtbot.waitUntil(lambda: window.run_panel.run_button.isEnabled(), timeout=2000)


def test_a_killed_worker_leaves_the_window_alive_and_says_so(window, qtbot):
    run = window.start_run(_long_spec())
    qtbot.waitUntil(lambda: len(run.steps) >= 1, timeout=WAIT_MS)
    kept = len(run.samples)
    os.kill(window.sessions[run.run_id].pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: run.finished, timeout=15_000)
    window.refresh()
    assert window.isVisible()
    assert window.error_banner.isVisible()
    assert "killed by SIGKILL" in window.error_banner.text()
    assert len(run.samples) >= kept
    assert window.run_panel.run_button.isEnabled()


def test_a_bad_model_is_refused_before_a_worker_starts(window, qtbot):
    window.run_panel.model.setEditText("/no/such/model")
    window.run_panel.steps.setValue(1)
    assert window.start_run() is None
    assert not window.sessions  # refused at once, not after a worker's ten seconds
    window.refresh()
    assert window.error_banner.isVisible()
    assert "no preset, directory or factory named '/no/such/model'" in window.error_banner.text()
    assert "Traceback" not in window.error_banner.text()


def test_a_second_run_appears_in_the_list_and_can_be_overlaid(window, qtbot):
    first = window.start_run(RunSpec(model="conv-lm", steps=1, batch_size=1, seq_len=32))
    qtbot.waitUntil(lambda: first.finished, timeout=WAIT_MS)
    second = window.start_run(RunSpec(model="lstm-lm", steps=1, batch_size=1, seq_len=32))
    qtbot.waitUntil(lambda: second.finished, timeout=WAIT_MS)
    assert window.run_list.count() == 2
    assert window.current_run() is second
    window.run_list.item(0).setCheckState(Qt.CheckState.Checked)
    window.refresh()
    assert window.run_list.shown_run_ids() == [second.run_id, first.run_id]
    assert set(window.timeline._layers) == {first.run_id, second.run_id}
    window.run_list.setCurrentRow(0)
    window.refresh()
    assert window.step_table.rowCount() == 1
    assert "conv-lm" in window.run_list.item(0).text()


def test_an_invalid_option_is_refused_before_a_worker_starts(window):
    assert window.start_run(RunSpec(batch_size=0)) is None
    assert window.error_banner.isVisible()
    assert "batch_size" in window.error_banner.text()
    assert window.sessions == {}


def test_every_run_is_recorded_and_opens_back_in_the_window(window, qtbot, tmp_path):
    import os

    run = window.start_run(RunSpec(model="conv-lm", steps=2, batch_size=1, seq_len=32))
    qtbot.waitUntil(lambda: run.finished and window.sessions[run.run_id].done.is_set(),
                    timeout=WAIT_MS)
    path = run.snapshot_path
    assert path.startswith(os.environ["MEMVIZ_RUNS_DIR"]) and os.path.getsize(path) > 0
    opened = window.open_snapshot(path)
    assert opened is not None and opened.run_id != run.run_id
    assert window.run_list.count() == 2 and window.current_run() is opened
    assert [s.loss for s in opened.steps] == [s.loss for s in run.steps]
    window.refresh()
    assert window.step_table.rowCount() == 2
    assert path in window.recent_files()[0] or os.path.samefile(window.recent_files()[0], path)


def test_a_bad_snapshot_is_refused_with_a_reason(window, tmp_path):
    bad = tmp_path / "bad.memviz"
    bad.write_bytes(b"definitely not sqlite")
    assert window.open_snapshot(str(bad)) is None
    assert window.error_banner.isVisible()
    assert "not a memviz snapshot" in window.error_banner.text()
    assert window.run_list.count() == 0


def test_compare_tab_shows_what_grew_between_two_runs(window, qtbot):
    # at sequence 256 activations make the peak (at 32 it is the optimizer step, the same
    # for every batch size, and the comparison rightly shows no change)
    small = window.start_run(RunSpec(model="gpt2-tiny", steps=1, batch_size=1, seq_len=256))
    qtbot.waitUntil(lambda: small.finished, timeout=WAIT_MS)
    big = window.start_run(RunSpec(model="gpt2-tiny", steps=1, batch_size=4, seq_len=256))
    qtbot.waitUntil(lambda: big.finished, timeout=WAIT_MS)
    window.run_list.item(0).setCheckState(Qt.CheckState.Checked)  # tick the small one
    window.tabs.setCurrentWidget(window.diff_view)
    window.refresh()
    result = window.diff_view.result
    assert result is not None
    assert result["a"]["label"] == small.spec.label() and result["b"]["label"] == big.spec.label()
    table = window.diff_view.tables["categories"]
    assert table.rowCount() >= 1
    assert table.item(0, 0).text() == "activations (saved for backward)"  # one label everywhere
    assert table.item(0, 3).text().startswith("+")


def test_save_as_copies_the_recording_and_never_overwrites_silently(window, qtbot, tmp_path):
    run = window.start_run(RunSpec(model="conv-lm", steps=1, batch_size=1, seq_len=32))
    qtbot.waitUntil(lambda: run.finished and window.sessions[run.run_id].done.is_set(),
                    timeout=WAIT_MS)
    target = tmp_path / "kept.memviz"
    assert window.save_run_as(run, str(target))
    assert window.open_snapshot(str(target)).steps == run.steps
    target_bytes = target.read_bytes()
    assert not window.save_run_as(run, str(target))  # exists: refused without asking
    assert "exists" in window.error_banner.text()
    assert target.read_bytes() == target_bytes


def test_dropping_a_snapshot_on_the_window_opens_it(window, tmp_path):
    from PySide6.QtCore import QMimeData, QPoint, QUrl
    from PySide6.QtGui import QDropEvent

    bad = tmp_path / "dropped.memviz"
    bad.write_bytes(b"not a snapshot")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(bad))])
    event = QDropEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert "not a memviz snapshot" in window.error_banner.text()


def test_about_names_every_version(qtbot):
    from importlib import metadata

    from memviz import __version__
    from memviz.gui.about import versions
    from memviz.gui.app import dispose
    from memviz.gui.main_window import MainWindow

    found = versions()
    assert found["memviz"] == __version__
    assert found["torch"] == metadata.version("torch")
    assert found["transformers"] == metadata.version("transformers")
    assert found["Qt"].startswith("6.") and found["device"]
    window = MainWindow()
    try:
        box = window.show_about()
        assert f"<td>{metadata.version('torch')}</td>" in box.text()
        assert "<b>device</b>" in box.text()
        box.close()
    finally:
        dispose(window)
