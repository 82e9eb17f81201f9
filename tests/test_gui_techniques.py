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
