"""The window as a user meets it: errors stay, every view follows the selected run,
the layout holds, the keyboard works, and a run's memory adds up. Real workers,
real widgets, offscreen."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from memviz.core.spec import RunSpec
from memviz.gui.app import make_app
from memviz.gui.main_window import MainWindow
from memviz.gui.timeline import MIN_HEIGHT

from .conftest import WORKER_DEADLINE_S

WAIT_MS = WORKER_DEADLINE_S * 1000
SHORT = {"model": "gpt2-tiny", "steps": 2, "batch_size": 1, "seq_len": 32}


@pytest.fixture
def window(qtbot):
    make_app()
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1280, 800)
    win.show()
    yield win
    win.close()


def _run(window, qtbot, **fields):
    run = window.start_run(RunSpec(**{**SHORT, **fields}))
    assert run is not None, window.error_banner.text()
    qtbot.waitUntil(lambda: run.finished, timeout=WAIT_MS)
    window.refresh()
    return run


def test_a_refused_run_keeps_its_reason_until_the_user_acts(window, qtbot):
    first = _run(window, qtbot)
    window.run_panel.technique_panel.set_checked("quantize")
    assert window.start_run() is None
    for _ in range(5):
        window.refresh()  # the timer's ticks
    assert window.error_banner.text().startswith("Cannot run: quantize")
    window.run_panel.technique_panel.set_checked("quantize", False)
    second = window.start_run(RunSpec(**SHORT))  # the user acts: the refusal goes
    assert second is not None and window.error_banner.text() == ""
    qtbot.waitUntil(lambda: second.finished, timeout=WAIT_MS)
    assert first.state == second.state == "finished"


def test_quantize_is_offered_once_lora_is_ticked(window):
    panel = window.run_panel.technique_panel
    item = panel._items["quantize"]
    assert "add lora" in item.text(1)  # training, quantize alone: greyed, and says why
    panel.set_checked("lora")
    assert item.text(1) == ""


def test_views_follow_the_selected_run_and_each_run_keeps_its_cursor(window, qtbot):
    first = _run(window, qtbot)
    second = _run(window, qtbot, batch_size=2)
    window.select_run(first.run_id)
    window.set_cursor(first.steps[0].t)
    first_cursor = window.timeline.cursor.value()
    window.tabs.setCurrentWidget(window.moment_view)
    assert window.moment_view.run is first and window.moment_view.tensors.rowCount() > 0
    window.select_run(second.run_id)
    window.refresh()
    assert window.moment_view.run is second
    # the second run's own cursor (its tracked peak, placed once it finished), not the first's
    assert window.timeline.cursor.value() != first_cursor
    window.select_run(first.run_id)
    assert window.timeline.cursor.value() == pytest.approx(first_cursor)


def test_a_live_run_is_shown_in_every_view(window, qtbot):
    run = window.start_run(RunSpec(model="gpt2-tiny", steps=10_000, batch_size=1, seq_len=32))
    try:
        qtbot.waitUntil(lambda: len(run.steps) >= 2, timeout=WAIT_MS)
        window.tabs.setCurrentWidget(window.modules_view)
        window.refresh()
        qtbot.waitUntil(lambda: window.modules_view.topLevelItemCount() == 1, timeout=10_000)
        root = window.modules_view.topLevelItem(0)
        assert root.text(2)  # allocated with children: the whole model's, live
        window.tabs.setCurrentWidget(window.moment_view)
        window.moment_view.jump_to_peak()  # works while the run goes
        assert window.timeline.cursor.isVisible()
        qtbot.waitUntil(lambda: window.moment_view.tensors.rowCount() > 0, timeout=10_000)
        window.timeline.clicked_at.emit(float(run.steps[0].t))  # a click on the timeline
        assert window.timeline.cursor.value() == pytest.approx(run.steps[0].t)
    finally:
        window.stop_run()
        qtbot.waitUntil(lambda: run.finished, timeout=WAIT_MS)


def test_the_layout_holds_with_overlays_and_the_comparison_tab(window, qtbot):
    first = _run(window, qtbot)
    _run(window, qtbot, techniques=[{"name": "checkpointing", "params": {}}])
    window.run_list.item(0).setCheckState(Qt.CheckState.Checked)  # overlay the first
    window.refresh()
    labels = window.timeline.legend.labels()
    assert labels.count("RSS") == 1 and len(labels) == len(set(labels))  # once per series
    assert f"run #{first.run_id}" in labels  # runs told apart by line style, keyed
    window.tabs.setCurrentWidget(window.comparison_view)
    qtbot.wait(50)
    assert window.timeline.height() >= MIN_HEIGHT
    assert all(state.empty for state in window.comparison_view.empty)  # nothing compared yet
    axis = window.comparison_view.bars.getPlotItem().getAxis("left")
    assert axis.style["showValues"] is False  # no "1 B, 1 B, 0 B"
    assert window.moment_view.modules.textElideMode() == Qt.TextElideMode.ElideMiddle


def test_keyboard_menus_and_exports(window, qtbot, tmp_path):
    menus = window.menus
    assert [k.toString() for k in menus.run_action.shortcuts()] == ["Ctrl+R", "F5"]
    assert menus.stop_action.shortcut().toString() == "Esc"
    assert [a.shortcut().toString() for a in menus.tab_actions[:3]] == \
        ["Ctrl+1", "Ctrl+2", "Ctrl+3"]
    menus.tab_actions[2].trigger()
    assert window.tabs.currentIndex() == 2
    window.run_panel.steps.setValue(1)
    window.run_panel.batch_size.setValue(1)
    window.run_panel.seq_len.setValue(32)
    menus.run_action.trigger()
    run = window.current_run()
    qtbot.waitUntil(lambda: run is not None and run.finished, timeout=WAIT_MS)
    for kind, name in (("torch-pickle", "run.pickle"), ("chrome-trace", "trace.json"),
                       ("html", "report.html"), ("csv", "tables")):
        assert window.files.export(run, kind, str(tmp_path / name))
        assert "Exported" in window.statusBar().currentMessage()
    assert (tmp_path / "tables" / "samples.csv").is_file()
    assert window.files.save_view(window.timeline, "timeline", str(tmp_path / "t.png"))
    assert "Saved the timeline" in window.statusBar().currentMessage()


def test_the_log_keeps_memvizs_messages_apart_from_the_workers(window, qtbot):
    run = _run(window, qtbot)
    run.add_log("worker", "UserWarning: something in the user's code")
    run.add_log("warning", "skipped counting FLOPs")
    window.tabs.setCurrentWidget(window.log_pane)
    window.refresh()
    assert "UserWarning" in window.log_pane.output.toPlainText()
    assert "UserWarning" not in window.log_pane.messages.toPlainText()
    assert "skipped counting FLOPs" in window.log_pane.messages.toPlainText()


def test_the_memory_story_adds_up(window, qtbot):
    from memviz.core.story import story_at

    run = _run(window, qtbot)
    story = story_at(run)
    tensors, runtime, allocator = story.cpu.parts
    assert story.cpu.nbytes == tensors.nbytes + runtime.nbytes + allocator.nbytes
    assert runtime.nbytes > 100 << 20  # torch and transformers, before the model loaded
    assert tensors.nbytes == run.worker_summary["tracking"]["tracked_bytes"]  # at the peak
    assert story.gpu is None  # no GPU here: no GPU story
    window.tabs.setCurrentWidget(window.story_view)
    window.refresh()
    lines = dict(window.story_view.rows())
    assert "RSS (resident memory of the process)" in lines
    assert "held by the allocator, beyond live tensors (the difference)" in lines


def test_the_timeline_zooms_time_only_and_reads_out_values(window, qtbot):
    run = _run(window, qtbot, steps=3)
    box = window.timeline.box
    (_, _), (y0, y1) = box.viewRange()

    class Drag:  # what pyqtgraph hands a drag, from x=0.5 s to the end of the first step
        def __init__(self, x0, x1, finish):
            self._down, self._at, self._finish = (box.mapViewToScene(QPointF(x0, 0)),
                                                  box.mapViewToScene(QPointF(x1, 0)), finish)

        def button(self):
            return Qt.MouseButton.LeftButton

        def buttonDownPos(self):
            return box.mapSceneToItem(self._down) if hasattr(box, "mapSceneToItem") \
                else box.mapFromScene(self._down)

        def pos(self):
            return box.mapFromScene(self._at)

        def isFinish(self):
            return self._finish

        def accept(self):
            pass

    t1 = run.steps[0].t
    box.mouseDragEvent(Drag(0.5, t1, True))
    (x0, x1), (ny0, ny1) = box.viewRange()
    assert x0 == pytest.approx(0.5, rel=1e-3) and x1 == pytest.approx(t1, rel=1e-3)
    assert (ny0, ny1) == pytest.approx((y0, y1), rel=0.2)  # the height is not zoomed
    text = window.timeline.describe_moment(t1)
    assert text.startswith(f"t = {t1:.3f} s") and "RSS" in text and "tracked" in text
    np.testing.assert_array_less(0, [len(c.getData()[0]) for c in
                                     window.timeline._layers[run.run_id].curves.values()])


def test_a_lora_run_lines_up_with_its_base_in_the_diff(window, qtbot):
    base = _run(window, qtbot)
    lora = _run(window, qtbot, techniques=[{"name": "lora", "params": {"r": 4}}])
    window.select_run(lora.run_id)
    window.run_list.item(0).setCheckState(Qt.CheckState.Checked)  # base is A, lora is B
    window.tabs.setCurrentWidget(window.diff_view)
    window.refresh()
    result = window.diff_view.result
    assert result is not None
    names = [r["name"] for r in result["modules"]]
    assert not any(n.startswith("base_model.model.") or ".base_layer" in n for n in names)
    same = {r["name"] for r in result["modules"] if r["a"] and r["b"]}
    assert "transformer.h.0.attn.c_attn" in same  # the frozen base is the same module
    assert "lora:r=4" in window.diff_view.title.text()
    assert "lora" in window.run_list.item(1).text()
    assert base.finished
