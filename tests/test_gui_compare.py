"""The technique comparison in the window: real workers, a real table and charts."""

from __future__ import annotations

import pytest

from memviz.gui.app import dispose
from memviz.gui.main_window import MainWindow


@pytest.mark.slow
def test_window_compares_sets_and_opens_a_row_as_a_run(qtbot, tmp_path):
    window = MainWindow()
    window.resize(1280, 800)
    window.show()
    try:
        panel = window.run_panel
        panel.batch_size.setValue(2)
        panel.seq_len.setValue(64)
        panel.steps.setValue(2)
        comparison = window.start_comparison("amp\noptimizer=sgd", False)
        assert window.start_comparison("amp", False) is None  # one thing at a time
        view = window.comparison_view
        # the sets' steps are simulated first, side by side where there are cores
        from memviz.compare.predictions import simulation_lanes

        simulated_first = "baseline, amp" if simulation_lanes() > 1 else "baseline"
        qtbot.waitUntil(lambda: f"(now: {simulated_first})" in view.status.text(),
                        timeout=60_000)
        assert view.status.text().startswith("Set 1 of 3 next")
        qtbot.waitUntil(lambda: comparison.finished, timeout=240_000)
        window.refresh()
        table = view.table
        assert [table.item(r, 0).text() for r in range(table.rowCount())] == [
            "baseline", "amp", "optimizer=sgd"]
        opt_col = [table.horizontalHeaderItem(c).text() for c in range(
            table.columnCount())].index("opt MiB")
        assert table.item(2, opt_col).text() == "0.0"  # plain SGD keeps no state
        assert float(table.item(0, opt_col).text()) > 20
        # every set is a run in the list; a row opens its run in the ordinary views
        assert len(window.runs) == 3
        table.selectRow(2)
        assert window.current_run().spec.optimizer == "sgd"
        # sorting by a header keeps the rows' runs
        window.comparison_view._sort_by(1)
        assert table.item(0, 0).text() == "optimizer=sgd"  # the smallest tracked peak
        # one stacked bar per category present, drawn in the category colours
        assert len(view.bars.getPlotItem().items) >= 4
        # at 1280×800: every row shows, the charts keep a third, the legend sits beside
        # the last bar, not over it
        qtbot.waitUntil(lambda: table.viewport().height() >= sum(
            table.rowHeight(r) for r in range(table.rowCount())))
        assert view.charts.height() >= 150
        from PySide6.QtCore import QPointF

        box = view.bars.getViewBox()
        last_bar = box.mapViewToScene(QPointF(table.rowCount() - 1 + 0.3, 0)).x()
        assert view.bars_legend.sceneBoundingRect().left() > last_bar
        image = view.grab().toImage()
        assert image.width() > 800
        view.grab().save(str(tmp_path / "comparison.png"))
        assert "3 sets measured" in view.status.text()
        saved = tmp_path / "comparison.memviz"
        assert window.save_comparison_as(str(saved))
        assert not window.save_comparison_as(str(saved))  # never over a file unasked
    finally:
        dispose(window)
    # a saved comparison reopens whole in a new window: runs, table and charts
    window = MainWindow()
    try:
        window.open_snapshot(str(saved))
        assert len(window.runs) == 3
        table = window.comparison_view.table
        assert [table.item(r, 0).text() for r in range(table.rowCount())] == [
            "baseline", "amp", "optimizer=sgd"]
        assert window.tabs.currentWidget() is window.comparison_view
    finally:
        dispose(window)


def test_window_refuses_a_wrong_set_with_the_reason(qtbot):
    window = MainWindow()
    try:
        assert window.start_comparison("quantize", False) is None
        assert "set 'quantize'" in window.error_banner.text()
        assert window.runs == {}
    finally:
        dispose(window)


@pytest.mark.slow
def test_fit_panel_finds_the_largest_batch_with_real_runs(qtbot):
    window = MainWindow()
    try:
        window.run_panel.steps.setValue(2)
        window.run_panel.seq_len.setValue(64)
        panel = window.comparison_view.fit_panel
        panel.limit.setValue(64)  # below what the process needs for its libraries
        panel.start(sets=False)
        assert not panel.batch_button.isEnabled()
        qtbot.waitUntil(lambda: not panel.running and "Largest" in panel.result.text(),
                        timeout=120_000)
        assert panel.result.text().startswith("Largest batch under 64 MiB: None (1 did not")
        assert panel.batch_button.isEnabled()
    finally:
        dispose(window)
