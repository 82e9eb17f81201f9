"""The technique panel: a real widget, its checklist, parameters and markers."""

from __future__ import annotations

from memviz.core.spec import RunSpec
from memviz.gui.run_panel import RunPanel
from memviz.techniques import GROUPS, TECHNIQUES


def test_panel_lists_every_technique_by_group_and_builds_the_spec(qtbot, tmp_path):
    panel = RunPanel()
    qtbot.addWidget(panel)
    tree = panel.technique_panel
    assert [tree.topLevelItem(i).text(0) for i in range(tree.topLevelItemCount())] == [
        g.capitalize() for g in GROUPS]
    names = {tree.topLevelItem(i).child(j).text(0) for i in range(tree.topLevelItemCount())
             for j in range(tree.topLevelItem(i).childCount())}
    assert names == set(TECHNIQUES)
    assert panel.spec().techniques == []

    tree.set_checked("lora", r=4)
    tree.set_checked("checkpointing")
    assert panel.spec().techniques == [{"name": "checkpointing", "params": {}},
                                       {"name": "lora", "params": {"r": 4}}]
    panel.resize(420, 900)
    panel.grab().save(str(tmp_path / "techniques.png"))
    assert (tmp_path / "techniques.png").stat().st_size > 5000


def test_panel_marks_what_does_not_apply_to_the_workload(qtbot):
    panel = RunPanel()
    qtbot.addWidget(panel)
    tree = panel.technique_panel
    item = tree._items["checkpointing"]
    assert item.text(1) == ""
    assert tree._items["cpu-offload"].text(1) == "(needs cuda)"
    assert "add lora" in tree._items["quantize"].text(1)
    panel.mode.setCurrentText("infer")
    assert item.text(1) == "(only for train)"
    assert tree._items["kv-cache"].text(1) == "(only for generate)"
    assert tree._items["quantize"].text(1) == ""
    panel.mode.setCurrentText("generate")
    assert tree._items["kv-cache"].text(1) == ""


def test_window_refuses_a_wrong_combination_before_starting(qtbot):
    from memviz.gui.app import dispose
    from memviz.gui.main_window import MainWindow

    window = MainWindow()
    try:
        spec = RunSpec(model="gpt2-tiny", techniques=[{"name": "quantize", "params": {}}])
        assert window.start_run(spec) is None
        assert "add lora" in window.error_banner.text()
        assert window.runs == {}
        assert not window.error_banner.isHidden()
    finally:
        dispose(window)


def test_run_list_names_each_runs_techniques(qtbot):
    from memviz.core.run import Run
    from memviz.gui.run_list import RunList

    runs = RunList()
    qtbot.addWidget(runs)
    run = Run(RunSpec(techniques=[{"name": "lora", "params": {"r": 4}},
                                  {"name": "checkpointing", "params": {}}]), run_id=1)
    runs.add_run(run)
    item = runs.item(0)
    assert "[lora:r=4 + checkpointing]" in item.text()
    assert item.toolTip().startswith(item.text())


def test_window_shows_every_rank_of_a_sharded_run_and_their_sum(qtbot, tmp_path):
    from memviz.core.ranks import all_ranks, rank_table
    from memviz.gui.app import dispose
    from memviz.gui.main_window import MainWindow

    window = MainWindow()
    window.resize(1400, 900)
    try:
        spec = RunSpec(model="gpt2-tiny", mode="train", steps=2, batch_size=4, seq_len=64,
                       techniques=[{"name": "zero", "params": {"world_size": 2}}])
        run = window.start_run(spec)
        qtbot.waitUntil(lambda: run.finished and 1 in run.ranks and run.ranks[1].finished,
                        timeout=180_000)
        window.tabs.setCurrentWidget(window.ranks_view)
        window.refresh()
        texts = [window.run_list.item(i).text() for i in range(window.run_list.count())]
        assert len(texts) == 2 and " rank 0 " in texts[0] and " rank 1 " in texts[1]
        table = window.ranks_view.table
        assert [table.item(r, 0).text() for r in range(table.rowCount())] == [
            "rank 0", "rank 1", "sum (at once)"]
        rows = rank_table(all_ranks(run))
        # optimizer state is held from the first step to the end on both ranks: it adds up
        assert rows[2].optimizer_state_bytes == rows[0].optimizer_state_bytes + \
            rows[1].optimizer_state_bytes > 0
        assert max(rows[0].peak_bytes, rows[1].peak_bytes) < rows[2].peak_bytes \
            <= rows[0].peak_bytes + rows[1].peak_bytes
        # selecting rank 1 shows it in the ordinary views; the ranks tab still shows both
        window.run_list.setCurrentRow(1)
        window.refresh()
        assert window.current_run() is run.ranks[1]
        assert window.step_table.rowCount() == 2
        assert window.ranks_view.table.rowCount() == 3
        window.grab().save(str(tmp_path / "ranks.png"))
    finally:
        dispose(window)


def test_window_shows_the_ranks_of_a_simulated_sharded_run(qtbot, tmp_path):
    from memviz.gui.app import dispose
    from memviz.gui.main_window import MainWindow

    window = MainWindow()
    window.resize(1400, 900)
    try:
        spec = RunSpec(model="gpt2-tiny", mode="train", steps=2, batch_size=4, seq_len=64,
                       simulate=True, techniques=[{"name": "zero", "params": {"world_size": 4}}])
        run = window.start_run(spec)
        qtbot.waitUntil(lambda: run.finished, timeout=180_000)
        assert run.state == "finished", run.error
        window.tabs.setCurrentWidget(window.ranks_view)
        window.refresh()
        view = window.ranks_view
        assert window.run_list.count() == 1  # the ranks ran inside the one worker
        assert "4 ranks" in view.note.text() and "simulated" in view.note.text()
        labels = [view.table.item(r, 0).text() for r in range(view.table.rowCount())]
        assert labels == ["rank 0", "rank 1", "rank 2", "rank 3", "sum of peaks"]
        peaks = [r["tracking"]["tracked_bytes"]
                 for r in run.worker_summary["distributed"]["ranks"]]
        from memviz.gui.axes import format_bytes

        assert view.table.item(4, 1).text() == format_bytes(sum(peaks))
        view.grab().save(str(tmp_path / "simulated-ranks.png"))
    finally:
        dispose(window)


def _wheel(widget, steps: int = 1) -> None:
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0),
                        QPoint(0, 120 * steps), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_scrolls_the_list_and_never_edits_a_setting(qtbot):
    panel = RunPanel()
    qtbot.addWidget(panel)
    panel.show()
    tree = panel.technique_panel
    _param, every = tree._editors["checkpointing"]["every"]
    _param, dtype = tree._editors["amp"]["dtype"]
    before = (every.value(), dtype.currentText())
    for editor in (every, dtype):
        _wheel(editor, -3)
    assert (every.value(), dtype.currentText()) == before  # scrolling past changes nothing
    # the same wheel over Qt's own spin box edits it: what the panel's editors refuse
    from PySide6.QtWidgets import QSpinBox

    plain = QSpinBox()
    qtbot.addWidget(plain)
    plain.show()
    _wheel(plain, 1)
    assert plain.value() == 1
