"""Small things a new user tripped over in the window, each as it was reproduced."""

from __future__ import annotations

import pytest

from memviz.core.run import Run
from memviz.core.spec import RunSpec


def test_the_steps_table_has_no_gpu_column_on_a_cpu_run(qtbot, gpt2_train_run):
    from memviz.gui.step_table import GPU_COLUMN, StepTable

    table = StepTable()
    qtbot.addWidget(table)
    table.show_run(gpt2_train_run)
    assert table.rowCount() == 2 and table.isColumnHidden(GPU_COLUMN)
    cuda = Run(RunSpec(model="gpt2-tiny", device="cuda", simulate=True), run_id=7)
    table.show_run(cuda)
    assert not table.isColumnHidden(GPU_COLUMN)


def test_a_program_that_connects_joins_the_list_without_taking_the_selection(
        qtbot, tmp_path):
    import os
    import subprocess
    import sys

    from memviz.gui.app import dispose
    from memviz.gui.main_window import MainWindow
    from memviz.protocol.token import TOKEN_ENV

    script = tmp_path / "train.py"
    script.write_text("import torch\nm = torch.nn.Linear(8, 8)\no = torch.optim.SGD("
                      "m.parameters())\nfor _ in range(30):\n    m(torch.randn(4, 8)).sum()"
                      ".backward()\n    o.step()\n    o.zero_grad()\n")
    window = MainWindow()
    program = None
    try:
        watched = window.start_run(RunSpec(model="gpt2-tiny", steps=200, batch_size=1,
                                           seq_len=32))
        qtbot.waitUntil(lambda: len(watched.steps) >= 1, timeout=120_000)
        listener = window.external._listening()
        program = subprocess.Popen(
            [sys.executable, "-m", "memviz", "record", "--connect", str(listener.address),
             "--", sys.executable, str(script)], env={**os.environ,
                                                      TOKEN_ENV: listener.token},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        qtbot.waitUntil(lambda: window.run_list.count() == 2, timeout=120_000)
        assert window.current_run() is watched  # it joined; the watched run stays shown
    finally:
        window.stop_run()
        if program is not None:
            program.wait(120)
        dispose(window)


def test_help_lists_the_topics_and_every_shortcut(qtbot):
    from memviz.gui.app import dispose
    from memviz.gui.help_menu import ShortcutsDialog, shortcuts
    from memviz.gui.main_window import MainWindow

    window = MainWindow()
    try:
        help_menu = next(a.menu() for a in window.menuBar().actions()
                         if a.text() == "&Help")
        titles = [a.text() for a in help_menu.actions() if a.text()]
        assert titles[0] == "Getting started (README)" and "&About memviz" in titles
        assert help_menu.actions()[0].isEnabled()  # README.md is beside the package here
        keys = {(menu, action): k for menu, action, k in shortcuts(window.menuBar())}
        assert keys[("Run", "Run")] == "Ctrl+R, F5" and keys[("Run", "Stop")] == "Esc"
        assert keys[("Help", "Keyboard shortcuts")] == "F1"
        dialog = ShortcutsDialog(window.menuBar(), window)
        assert "Ctrl+R, F5" in dialog.text.text() and "Ctrl+O" in dialog.text.text()
    finally:
        dispose(window)


def test_fp16_autocast_is_greyed_on_cpu_with_the_reason(qtbot):
    from dataclasses import replace

    from memviz.gui.run_panel import RunPanel

    panel = RunPanel()
    qtbot.addWidget(panel)
    tree = panel.technique_panel
    _param, dtype = tree._editors["amp"]["dtype"]
    tree.update_applicability(panel.spec())  # the panel's workload: on the CPU
    fp16 = dtype.findText("fp16")
    assert not dtype.model().item(fp16).isEnabled()
    assert "not offered on CPU" in dtype.itemData(fp16, 3)  # its tooltip says why
    assert dtype.model().item(dtype.findText("bf16")).isEnabled()
    tree.update_applicability(replace(panel.spec(), device="cuda", simulate=True))
    assert dtype.model().item(fp16).isEnabled()  # on a GPU it is offered


def test_after_esc_the_window_keeps_saying_it_is_stopping(qtbot):
    from memviz.gui.app import dispose
    from memviz.gui.main_window import MainWindow

    window = MainWindow()
    try:
        # steps of a second or so: a stop asked for at a step's start waits for its phase
        run = window.start_run(RunSpec(model="gpt2-tiny", steps=500, batch_size=8,
                                       seq_len=512))
        qtbot.waitUntil(lambda: len(run.steps) >= 1, timeout=120_000)
        window.stop_run()
        window.refresh()  # a refresh no longer writes over it
        assert "stopping at its next phase" in window.state_label.text()
        assert window.run_panel.stop_button.text() == "Stop at once"
        qtbot.waitUntil(lambda: run.finished, timeout=120_000)
        window.refresh()
        assert "stopping" not in window.state_label.text()
        assert window.run_panel.stop_button.text() == "Stop"
        assert not window.run_panel.stop_button.isEnabled()
    finally:
        dispose(window)


def test_a_long_readout_never_widens_the_window(qtbot):
    from memviz.gui.app import dispose
    from memviz.gui.main_window import MainWindow

    window = MainWindow()
    try:
        window.resize(1280, 800)
        window.show()
        qtbot.waitUntil(lambda: window.width() == 1280)
        readout = "t = 12.345 s · " + " · ".join(f"series {i} 123.4 MiB" for i in range(12))
        window.timeline.readout.setText(readout)
        window.state_label.setText("Run #1: " + "x" * 300)
        qtbot.waitUntil(lambda: window.minimumSizeHint().width() < 1280)
        assert window.width() == 1280
    finally:
        dispose(window)


def test_the_empty_allocations_view_says_what_is_going_on():
    from memviz.gui.alloc_view import empty_text

    assert "run with Tracking set to tensors" in empty_text(None)
    starting = Run(RunSpec(model="gpt2-tiny"), run_id=1)  # tracked, not started yet
    assert empty_text(starting).startswith("Waiting for the first allocations")
    sampled = Run(RunSpec(model="gpt2-tiny", track="samples"), run_id=2)
    assert "sampled memory only" in empty_text(sampled)


def test_the_readout_follows_redraws_and_leaves_with_its_run(qtbot, gpt2_train_run, tmp_path):
    from memviz.gui.timeline import TimelineView

    timeline = TimelineView()
    qtbot.addWidget(timeline)
    timeline.show_runs([gpt2_train_run])
    t = float(gpt2_train_run.samples.column("t")[-1]) / 2
    timeline._pointer_t = t  # where the pointer last moved
    timeline.redraw()  # a zoom or new data: the values are read again there
    assert timeline.readout.text() == timeline.describe_moment(t)
    assert timeline.readout.text().startswith(f"t = {t:.3f} s")
    other = Run(RunSpec(model="gpt2-tiny"), run_id=99)
    timeline.show_runs([other])  # another run: the old values are not its own
    assert timeline.readout.text() == " "


def test_a_saved_timeline_has_no_stale_readout_in_it(qtbot, gpt2_train_run, tmp_path):
    from memviz.gui.app import dispose
    from memviz.gui.main_window import MainWindow

    window = MainWindow()
    try:
        window.timeline.show_runs([gpt2_train_run])
        window.timeline._pointer_t = 0.5
        window.timeline.redraw()
        assert window.timeline.readout.text().startswith("t = 0.500 s")
        assert window.files.save_view(window.timeline, "timeline", str(tmp_path / "t.png"))
        assert window.timeline.readout.text() == " "
        assert (tmp_path / "t.png").stat().st_size > 0
    finally:
        dispose(window)


def test_the_techniques_list_gets_room_on_a_small_screen_and_the_splitter_gives_more(qtbot):
    from memviz.gui.app import dispose
    from memviz.gui.main_window import MainWindow

    window = MainWindow()
    try:
        window.resize(1024, 700)
        window.show()
        qtbot.waitUntil(lambda: window.width() == 1024)
        tree = window.run_panel.technique_panel

        def rows() -> int:
            return tree.viewport().height() // tree.sizeHintForRow(0)

        assert rows() >= 6  # it showed 2 at this size
        split = window.run_panel.split
        top, bottom = split.sizes()
        split.setSizes([top - 150, bottom + 150])  # the user drags the handle up
        qtbot.waitUntil(lambda: rows() >= 12)  # the form scrolls; the list grows
        # the form's fields stay whole: the left side is never narrower than they are
        assert window.run_panel.width() >= 330
    finally:
        dispose(window)


def test_the_allocations_view_draws_the_cursor_and_reads_time_as_the_timeline(qtbot):
    from memviz.gui.app import dispose
    from memviz.gui.main_window import MainWindow

    window = MainWindow()
    try:
        run = window.start_run(RunSpec(model="gpt2-tiny", steps=2, batch_size=1, seq_len=32))
        qtbot.waitUntil(lambda: run.finished, timeout=120_000)
        window.refresh()
        label = window.alloc_view.getPlotItem().getAxis("bottom").labelText
        assert label == window.timeline.plot_item.getAxis("bottom").labelText
        t = float(run.steps[0].t)
        window.set_cursor(t)
        assert window.alloc_view.cursor.isVisible()
        assert window.alloc_view.cursor.value() == window.timeline.cursor.value() == t
    finally:
        dispose(window)


def test_overlays_line_up_by_their_first_step_on_request(qtbot, gpt2_train_run):
    from memviz.gui.timeline import TimelineView, _first_step

    from .conftest import run_worker

    other, _ = run_worker(model="llama-tiny", steps=2, batch_size=1, seq_len=32)
    other.run_id = gpt2_train_run.run_id + 1  # two runs in one timeline
    timeline = TimelineView()
    qtbot.addWidget(timeline)
    timeline.show_runs([gpt2_train_run, other])  # the first is the selected run
    assert timeline._layers[other.run_id].offset == 0.0  # by wall time at first
    timeline.set_align_by_step(True)
    moved = timeline._layers[other.run_id]
    assert moved.offset == _first_step(other) - _first_step(gpt2_train_run) != 0
    assert timeline._layers[gpt2_train_run.run_id].offset == 0.0  # the selected run stays
    # the other run's step marks, drawn, begin where the selected run's first step does
    first_end = float(moved.step_ends.view()[0])
    assert first_end == pytest.approx(other.steps[0].t - moved.offset)
    assert first_end - other.steps[0].seconds == pytest.approx(_first_step(gpt2_train_run))
    assert "lined up by their first step" in timeline.plot_item.getAxis("bottom").labelText
    timeline.set_align_by_step(False)
    assert timeline._layers[other.run_id].offset == 0.0


def test_a_byte_axis_over_a_few_bytes_never_repeats_a_label(qtbot):
    import pyqtgraph as pg

    from memviz.gui.axes import BytesAxis

    plot = pg.PlotWidget(axisItems={"left": BytesAxis("left")})
    qtbot.addWidget(plot)
    axis = plot.getAxis("left")
    for top in (1.0, 1.2, 3.0, 40.0, 3 << 20):
        levels = axis.tickValues(0.0, top, 300)
        labels = [label for spacing, values in levels
                  for label in axis.tickStrings(values, 1.0, spacing)]
        assert len(labels) == len(set(labels)), (top, labels)


def test_the_steps_table_gives_each_phases_peak_and_explains_the_loss(qtbot, gpt2_train_run):
    """Per step: the tracked peak, and the peak within forward, backward and the
    optimizer step; the highest of a step's phases is its tracked peak (a training
    step's peak is inside one of them), and the loss header says what the loss is."""
    from memviz.core.phase_peaks import PHASES, LiveTotals, phase_peaks
    from memviz.gui.axes import format_bytes
    from memviz.gui.step_table import HEADERS, PHASE_COLUMNS, StepTable

    table = StepTable()
    qtbot.addWidget(table)
    run = gpt2_train_run
    table.show_run(run)
    peaks = phase_peaks(run.phases, LiveTotals.of(run.tensors))
    # a live run's steps, each by its own window, give the same figures
    assert phase_peaks(run.phases, run.tensors) == peaks
    for row, step in enumerate(run.steps):
        by_phase = [peaks[(step.step, p)] for p in PHASES]
        assert max(by_phase) == step.tracked_peak_bytes  # exact, from the allocations
        assert [table.item(row, c).text() for c in PHASE_COLUMNS] == \
            [format_bytes(b) for b in by_phase]
        assert table.item(row, HEADERS.index("tracked peak")).text() == \
            format_bytes(step.tracked_peak_bytes)
    assert "num_items_in_batch" in table.horizontalHeaderItem(1).toolTip()
    assert "forward" in table.horizontalHeaderItem(PHASE_COLUMNS[0]).toolTip()


def test_a_live_runs_new_steps_are_figured_from_their_own_phases(qtbot, gpt2_train_run):
    """A tick that brings step k onwards takes the phases from the end of the run's list
    (not a pass over a long run's every phase) and gives the figures the whole run gives
    for those steps."""
    from memviz.core.phase_peaks import LiveTotals, phase_peaks
    from memviz.gui.step_table import StepTable

    table = StepTable()
    qtbot.addWidget(table)
    run = gpt2_train_run
    whole = phase_peaks([p for p in run.phases if p.step >= 0], LiveTotals.of(run.tensors))
    assert len(run.steps) >= 2
    for first in range(1, len(run.steps) + 1):
        assert table._phase_peaks(run, first) == \
            {key: peak for key, peak in whole.items() if key[0] >= first}
