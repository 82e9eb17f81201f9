"""The tracking views in the real window, on a real run: pixels, values, filters."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtGui import QImage

from memviz.core import analysis
from memviz.core.categories import CATEGORIES, COLOURS, LABELS
from memviz.core.spec import RunSpec
from memviz.gui.app import dispose, make_app
from memviz.gui.main_window import MainWindow

from .test_gui import _colour_pixels

WAIT_MS = 180_000


@pytest.fixture(scope="module")
def finished_window():
    """One window that ran gpt2-tiny with stacks; the views are inspected after."""
    app = make_app()
    win = MainWindow()
    win.resize(1280, 900)
    win.show()
    run = win.start_run(RunSpec(model="gpt2-tiny", steps=2, batch_size=2, seq_len=64,
                                track="tensors+stacks"))
    deadline = time.monotonic() + WAIT_MS / 1000
    while not run.finished and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    assert run.state == "finished", run.error
    _settle(app)
    yield app, win, run
    dispose(win)


def _settle(app, seconds: float = 0.4) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def test_category_areas_are_drawn_in_the_timeline(finished_window):
    _app, win, run = finished_window
    layers = win.timeline._layers[run.run_id]
    assert {"parameter", "gradient", "optimizer_state", "activation"} <= set(layers.areas)
    top = np.max([area.getData()[1] for area in layers.areas.values()], axis=0)
    # the stack's top is the tracked total (zero before tracking starts)
    tracked = np.nan_to_num(np.asarray(run.samples.column("tracked_total")))
    np.testing.assert_allclose(top, tracked)
    assert tracked.max() > run.model["parameter_bytes"]
    image = win.timeline.grab().toImage()
    for name in ("parameter", "optimizer_state", "activation"):
        assert _colour_pixels(image, COLOURS[name], tolerance=4) > 30, name


def test_allocation_view_draws_bands_in_category_colours(finished_window):
    app, win, _run = finished_window
    win.tabs.setCurrentIndex(1)
    _settle(app)
    view = win.alloc_view
    assert view.bar_count() > 100
    assert set(view._items) >= {"parameter", "activation"}
    image = QImage(view.grab().toImage())
    assert _colour_pixels(image, COLOURS["activation"], tolerance=4) > 200
    assert _colour_pixels(image, COLOURS["parameter"], tolerance=4) > 200


def test_clicking_a_band_inspects_that_allocation(finished_window):
    app, win, run = finished_window
    win.tabs.setCurrentIndex(1)
    _settle(app)
    rows = run.tensors.rows
    activation = CATEGORIES.index("activation")
    candidates = win.alloc_view.shown_rows[
        rows.column("category")[win.alloc_view.shown_rows] == activation]
    row = int(candidates[np.argmax(rows.column("nbytes")[candidates])])
    t = (rows.column("t_alloc")[row] + rows.column("t_free")[row]) / 2
    y = rows.column("offset")[row] + rows.column("nbytes")[row] / 2
    assert analysis.at_point(run.tensors, t, y, 1e9) == row
    win._inspect(row)
    from memviz.gui.alloc_view import hover_text
    from memviz.gui.axes import format_bytes

    hover = hover_text(run, row)
    assert hover.startswith(format_bytes(int(rows.column("nbytes")[row])) + " float32 [")
    assert LABELS["activation"] in hover and " · transformer." in hover
    fields = win.inspector.fields
    assert fields["category"] == LABELS["activation"]
    assert fields["bytes"].endswith(f"({int(rows.column('nbytes')[row]):,} B)")
    assert fields["module"].startswith("transformer.")
    assert fields["phase"].startswith("forward")
    assert fields["freed at"] != "still live"
    # the model's own frames (transformers' GPT-2), torch's internals left out
    assert "modeling_gpt2.py" in fields["stack"] and ":forward" in fields["stack"]
    assert "/torch/" not in fields["stack"]


def test_moment_lists_live_tensors_largest_first_with_exact_totals(finished_window):
    _app, win, run = finished_window
    t_peak, peak = analysis.tracked_peak_time(run.tensors)
    assert peak == run.worker_summary["tracking"]["tracked_bytes"]
    win.set_cursor(t_peak)
    moment = win.moment_view.moment
    assert moment.total == peak
    sizes = run.tensors.rows.column("nbytes")[moment.rows]
    assert (np.diff(sizes) <= 0).all()
    assert sum(moment.by_category.values()) == peak
    assert win.moment_view.tensors.rowCount() == min(len(moment.rows), 500)
    assert "live tensors" in win.moment_view.title.text()
    # parameters are attributed to the module that owns them
    assert any(name.startswith("transformer.h.0") for name, _ in moment.by_module)


def test_filters_narrow_the_views(finished_window):
    app, win, run = finished_window
    win.tabs.setCurrentIndex(1)
    bar = win.filter_bar
    bar.category.setCurrentIndex(1 + CATEGORIES.index("optimizer_state"))
    _settle(app)
    cats = run.tensors.rows.column("category")[win.alloc_view.shown_rows]
    assert len(cats) and (cats == CATEGORIES.index("optimizer_state")).all()
    bar.category.setCurrentIndex(0)
    bar.min_kib.setValue(512)
    _settle(app)
    assert (run.tensors.rows.column("nbytes")[win.alloc_view.shown_rows] >= 512 * 1024).all()
    bar.min_kib.setValue(0)
    bar.text.setText("mlp.c_fc")
    _settle(app)
    modules = {run.tensors.string("module", int(m))
               for m in run.tensors.rows.column("module")[win.alloc_view.shown_rows]}
    assert modules and all("mlp.c_fc" in m for m in modules)
    bar.text.setText("")
    _settle(app)


def test_module_table_lists_modules_with_their_activations(finished_window):
    _app, win, run = finished_window
    win.tabs.setCurrentIndex(3)
    win.refresh()
    tree = win.modules_view
    assert tree.topLevelItemCount() == 1
    stats = {s.name: s for s in analysis.module_stats(run.tensors, 2, 3)}
    root = tree.topLevelItem(0)
    assert root.text(7) == ""  # the root owns no parameters of its own
    tree_rows = {row[0]: row for row in run.model["module_tree"]}
    # but with its children it holds every weight: the total on the parent row
    from memviz.gui.axes import format_bytes

    assert root.text(1) == format_bytes(run.model["parameter_bytes"])
    assert tree.headerItem().text(1) == "parameter bytes (with children)"
    assert tree_rows["transformer.h.0.mlp.c_fc"][3] == (256 * 1024 + 1024) * 4  # weight + bias
    fc = stats["transformer.h.0.mlp.c_fc"]
    # c_fc's output (batch 2 × 64 × 1024 floats) is kept for the activation's backward
    assert fc.activations >= 2 * 64 * 1024 * 4
    assert fc.peak_forward > 0 and fc.peak_backward > 0


def test_group_peaks_are_the_highest_concurrent_sum():
    from memviz.core.analysis import _group_peaks

    groups = np.array([0, 0, 0, 1])
    t_alloc = np.array([0.0, 1.0, 5.0, 0.0])
    t_free = np.array([2.0, 3.0, np.nan, 1.0])
    nbytes = np.array([10, 20, 5, 7])
    # group 0: 10 then 10+20=30 at t=1, then 20 at 2, 0 at 3, 5 at 5 → 30; group 1 → 7
    assert list(_group_peaks(groups, t_alloc, t_free, nbytes, 2)) == [30, 7]


def test_views_save_as_png_and_svg(finished_window, tmp_path):
    from PySide6.QtSvg import QSvgRenderer

    from memviz.gui.plot_export import save

    app, win, _run = finished_window
    win.tabs.setCurrentIndex(1)
    _settle(app)
    for widget, name in ((win.timeline, "timeline"), (win.alloc_view, "allocations")):
        png, svg = tmp_path / f"{name}.png", tmp_path / f"{name}.svg"
        save(widget, png)
        save(widget, svg)
        image = QImage(str(png))
        assert image.width() == widget.width()
        assert _colour_pixels(image, COLOURS["activation"], 4) > 50, name
        renderer = QSvgRenderer(str(svg))
        assert renderer.isValid(), name
        assert renderer.viewBox().width() == widget.width()  # pixels; the size is in mm


def test_run_menu_records_the_next_step_in_full(qtbot):
    window = MainWindow()
    try:
        run = window.start_run(RunSpec(model="gpt2-tiny", steps=10_000, batch_size=1,
                                       seq_len=32, detail="first:0"))
        qtbot.waitUntil(lambda: len(run.steps) >= 2, timeout=120_000)
        asked_after = len(run.steps)
        action = next(a for menu in window.menuBar().actions() if menu.menu()
                      for a in menu.menu().actions() if "next step in" in a.text())
        assert action.shortcut().toString() == "Ctrl+D"
        action.trigger()
        assert "recorded in full" in window.state_label.text()
        qtbot.waitUntil(lambda: any(s.detailed for s in run.steps), timeout=120_000)
        detailed = [s.step for s in run.steps if s.detailed]
        assert len(detailed) == 1 and detailed[0] >= asked_after - 1
        window.stop_run()
        qtbot.waitUntil(lambda: run.finished, timeout=60_000)
        action.trigger()  # nothing is running now: said so, nothing breaks
        assert "No run is going" in window.error_banner.text()
    finally:
        dispose(window)


def test_the_inspector_follows_the_selected_run(finished_window, qtbot):
    """Inspect an allocation of run 1, start run 2: the panel empties (run 2 has none
    inspected); select run 1 again: its allocation is back."""
    _app, win, run = finished_window
    win.select_run(run.run_id)
    win._inspect(0)
    assert win.inspector.fields["allocation"] == "#0"
    second = win.start_run(RunSpec(model="gpt2-tiny", steps=1, batch_size=1, seq_len=16))
    qtbot.waitUntil(lambda: second.finished, timeout=WAIT_MS)
    assert second.state == "finished", second.error
    win.select_run(second.run_id)
    qtbot.waitUntil(lambda: win.current_run() is second)
    assert win.inspector.fields == {} and win.inspector.toPlainText() == ""
    win.select_run(run.run_id)
    qtbot.waitUntil(lambda: win.inspector.fields.get("allocation") == "#0")
    assert win.inspector.fields["bytes"] in win.inspector.toPlainText()
