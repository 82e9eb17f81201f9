"""The main window: run panel and run list on the left, timeline and tables on the right.

Runs are polled by one timer (20 Hz): each view redraws only what changed since
its last look, so the stream never drives Qt signals per message.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
)

from ..core.categories import LABELS
from ..core.oom import last_moment
from ..core.run import Run
from ..core.spec import RunSpec
from ..session import WorkerSession
from ..version import __version__
from . import gui_thread_gc, window_layout
from .alloc_view import AllocationView
from .axes import format_bytes, settle
from .banner import Banner
from .call_sites_view import CallSitesView
from .comparison_view import ComparisonView
from .diff_view import DiffView
from .external import ExternalRuns
from .file_actions import FileActions, runs_dir
from .file_opening import FileOpener, window_note
from .filters import FilterBar
from .inspector import Inspector
from .log_pane import LogPane
from .menus import WindowMenus
from .modules_view import ModulesView
from .moment_view import MomentView
from .ranks_view import RanksView
from .run_control import RunControl
from .run_list import RunList
from .run_panel import RunPanel
from .segments_view import SegmentsView
from .step_table import StepTable
from .story_view import StoryView
from .timeline import TimelineView
from .working_set import WorkingSets

REFRESH_MS = 50
SNAPSHOT_SUFFIXES = (".memviz", ".pickle", ".pkl", ".json")


def failure_text(run: Run) -> str | None:
    """The banner for a failed run: its reason; for an OOM, what was live then too."""
    if not run.error:
        return None
    text = f"Run #{run.run_id} failed: {run.error['message']}"
    oom = last_moment(run)
    if oom is not None and oom["by_category"]:
        largest = sorted(oom["by_category"].items(), key=lambda kv: -kv[1])[:3]
        text += (f". Live at {oom['t']:.2f} s: " +
                 ", ".join(f"{LABELS[c]} {format_bytes(b)}" for c, b in largest) +
                 " (At a moment lists every tensor)")
    return text


class MainWindow(QMainWindow):
    def __init__(self, model: str | None = None) -> None:
        super().__init__()
        self.setWindowTitle(f"memviz {__version__}")
        self.resize(1280, 800)
        self.runs: dict[int, Run] = {}
        self.rank_parent: dict[int, int] = {}  # a rank's run id -> rank 0's run id
        self.sessions: dict[int, WorkerSession] = {}
        self._next_id = 1
        self._banner_key: tuple[int, int] | None = None
        self._cursors: dict[int, float] = {}  # each run's cursor, where it was left
        self._cursor_run: int | None = None  # the run the cursor belongs to now
        self._moment_shown_at: tuple[int, int] | None = None

        self.run_panel = RunPanel()
        if model:
            self.run_panel.model.setEditText(model)
        self.run_panel.run_clicked.connect(self.start_run)
        self.run_panel.stop_clicked.connect(self.stop_run)
        self.run_list = RunList()
        self.run_list.shown_changed.connect(self._shown_changed)

        self.error_banner = Banner()
        self.timeline = TimelineView()
        self.step_table = StepTable()
        self.log_pane = LogPane()
        self.alloc_view = AllocationView()
        self._syncing_x = False
        self.timeline.plot_item.getViewBox().sigXRangeChanged.connect(self._timeline_x_changed)
        self.alloc_view.getPlotItem().getViewBox().sigRangeChangedManually.connect(
            self._alloc_x_changed)
        self.inspector = Inspector()
        self.filter_bar = FilterBar()
        self.moment_view = MomentView()
        self.modules_view = ModulesView()
        self.story_view = StoryView()
        self.segments_view = SegmentsView()
        self.call_sites_view = CallSitesView()
        self.call_sites_view.rows_chosen.connect(self._show_allocations)
        self.diff_view = DiffView()
        self.ranks_view = RanksView()
        self.comparison_view = ComparisonView(
            lambda: replace(self.run_panel.spec(), techniques=[]))
        self.comparison = None  # the technique comparison being run or last run
        self.comparison_view.start_requested.connect(self.start_comparison)
        self.comparison_view.cancel_requested.connect(self.cancel_comparison)
        self.comparison_view.run_selected.connect(self.select_run)
        self.state_label = QLabel("Ready: press Run")
        self.memory_label = QLabel()
        self.gpu_label = QLabel()
        self.left_split, self.right_split, self.tabs = window_layout.arrange(self)
        self.alloc_view.allocation_clicked.connect(self._inspect)
        self.moment_view.row_selected.connect(self._inspect)
        self.moment_view.jump_requested.connect(self.set_cursor)
        self.timeline.cursor.sigPositionChanged.connect(lambda *_: self._cursor_moved())
        self.timeline.clicked_at.connect(self.set_cursor)
        self.filter_bar.changed.connect(self._filter_changed)
        self.filter_bar.colour_by.currentTextChanged.connect(self.alloc_view.set_colour_by)
        self._keep = None
        self.tabs.currentChanged.connect(self._tab_changed)
        self.setAcceptDrops(True)
        self.external = ExternalRuns(self)
        self.working_sets = WorkingSets()  # long runs opened a span at a time
        self.files = FileActions(self)
        self.opener = FileOpener(self)
        self.control = RunControl(self)
        self.menus = WindowMenus(self)

        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(REFRESH_MS)
        # while it is open, this process's other threads must not collect Qt objects
        key = id(self)
        gui_thread_gc.hold(key)
        self.destroyed.connect(lambda *_: gui_thread_gc.release(key))

    # -- files ------------------------------------------------------------------
    def show_about(self):
        from .about import show_about

        return show_about(self)

    def _say_runs_dir(self) -> None:
        self.state_label.setText(f"Every run is recorded in {runs_dir()} "
                                 "(set MEMVIZ_RUNS_DIR to change it)")

    def save_run_as(self, run: Run, path: str, overwrite: bool = False) -> bool:
        return self.files.save_run_as(run, path, overwrite)

    def save_comparison_as(self, path: str, overwrite: bool = False) -> bool:
        return self.files.save_comparison_as(path, overwrite)

    @staticmethod
    def recent_files() -> list[str]:
        return FileActions.recent_files()

    def _remember(self, path: str) -> None:
        self.files.remember(path)

    def _open_dialog(self) -> None:
        self.opener.open_dialog()

    def open_snapshot(self, path: str) -> Run | None:
        """Open a .memviz file or PyTorch snapshot as a run (``FileOpener.open``)."""
        return self.opener.open(path)

    def dragEnterEvent(self, event) -> None:
        if any(u.toLocalFile().endswith(SNAPSHOT_SUFFIXES) for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for url in event.mimeData().urls():
            if url.toLocalFile().endswith(SNAPSHOT_SUFFIXES):
                self.opener.open(url.toLocalFile())

    # -- actions ----------------------------------------------------------------
    # -- run control (gui/run_control.py) ----------------------------------------------
    def _recorder_for(self, run: Run):
        return self.control.recorder_for(run)

    def active_run(self) -> Run | None:
        return self.control.active_run()

    def adopt(self, run: Run, session) -> None:
        self.control.adopt(run, session)

    def start_run(self, spec: RunSpec | None = None, session_for=None) -> Run | None:
        return self.control.start_run(spec, session_for)

    def start_comparison(self, text: str, greedy: bool = False):
        return self.control.start_comparison(text, greedy)

    def cancel_comparison(self) -> None:
        self.control.cancel_comparison()

    def stop_run(self) -> None:
        self.control.stop_run()

    def record_next_step_in_full(self) -> None:
        self.control.record_next_step_in_full()

    def new_run_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _tab_changed(self, _index: int) -> None:
        """The comparison needs room: it takes most of the height while it is shown."""
        total = sum(self.right_split.sizes())
        share = 0.8 if self.tabs.currentWidget() is self.comparison_view else 0.32
        self.right_split.setSizes([int(total * (1 - share)), int(total * share)])

    def select_run(self, run_id: int) -> None:
        for row in range(self.run_list.count()):
            if self.run_list.item(row).data(Qt.ItemDataRole.UserRole) == run_id:
                self.run_list.setCurrentRow(row)
                return

    def current_run(self) -> Run | None:
        run_id = self.run_list.current_run_id()
        return None if run_id is None else self.runs.get(run_id)

    # -- drawing ----------------------------------------------------------------
    def _shown_changed(self) -> None:
        """Every view follows the selected run: its timeline, allocations, cursor (each
        run keeps its own), moment and modules."""
        run = self.current_run()
        self.timeline.show_runs([self.runs[i] for i in self.run_list.shown_run_ids()])
        self.timeline.show_loaded_span(run.tensors_window if run is not None else None)
        self.alloc_view.set_run(run)
        self.inspector.follow(run)
        self.moment_view.run = run
        t = self._cursors.get(run.run_id) if run is not None else None
        self._cursor_run = None  # no cursor moves are taken while it is placed
        if t is None:
            self.timeline.cursor.hide()
            self.moment_view.clear()
        else:
            self.timeline.cursor.show()
            self.timeline.cursor.setValue(t)
        self.alloc_view.set_cursor(t)
        self._cursor_run = None if run is None else run.run_id
        self._filter_changed()
        self.refresh()

    # -- the allocation views -------------------------------------------------
    def _timeline_x_changed(self, _vb, x_range) -> None:
        """The timeline leads: the allocation view shows the same time range.

        (A two-way setXLink lets the allocation view's own autorange switch the
        timeline's off; this one-way mirror does not.)"""
        if not self._syncing_x:
            self._syncing_x = True
            self.alloc_view.setXRange(*x_range, padding=0)
            self._syncing_x = False

    def _alloc_x_changed(self, *_args) -> None:
        if not self._syncing_x:
            self._syncing_x = True
            x0, x1 = self.alloc_view.getPlotItem().getViewBox().viewRange()[0]
            self.timeline.plot_item.setXRange(x0, x1, padding=0)
            self._syncing_x = False

    def _filter_changed(self) -> None:
        run = self.current_run()
        if run is None:
            return
        with run.lock:
            self._keep = self.filter_bar.current().mask(run.tensors)
        self.alloc_view.set_filter(self._keep)
        self._cursor_moved()

    def _inspect(self, row: int) -> None:
        run = self.current_run()
        if run is not None:
            self.alloc_view.select(row)
            self.inspector.show_allocation(run, row)

    def _show_allocations(self, rows) -> None:
        """Show only these allocations of the selected run, in the Allocations view."""
        run = self.current_run()
        if run is None:
            return
        self._keep = np.zeros(len(run.tensors), dtype=bool)
        self._keep[rows] = True
        self.alloc_view.set_filter(self._keep)
        self.tabs.setCurrentWidget(self.alloc_view.parentWidget().parentWidget())

    def set_cursor(self, t: float) -> None:
        self.timeline.cursor.show()
        self.timeline.cursor.setValue(t)
        self._cursor_moved()

    def _cursor_moved(self) -> None:
        run = self.current_run()
        if run is None or self._cursor_run != run.run_id or not self.timeline.cursor.isVisible():
            return
        t = self.timeline.cursor.value()
        self._cursors[run.run_id] = t
        self.alloc_view.set_cursor(t)
        if self.working_sets.follow(run, t):
            a, b = self.working_sets.loading(run)
            self.state_label.setText(f"Loading the allocations of {a:.1f}–{b:.1f} s…")
        self.moment_view.show_moment(run, t, self._keep)
        self._moment_shown_at = (run.run_id, run.revision)


    def _adopt_ranks(self) -> None:
        """A sharded run's other ranks join the run list as runs of their own."""
        adopted = {id(self.runs[i]) for i in self.rank_parent}
        for parent in [r for r in self.runs.values() if r.ranks]:
            with parent.lock:
                peers = [parent.ranks[k] for k in sorted(parent.ranks)]
            for peer in peers:
                if id(peer) not in adopted:
                    peer.run_id = self._next_id
                    self._next_id += 1
                    self.runs[peer.run_id] = peer
                    self.rank_parent[peer.run_id] = parent.run_id
                    self.run_list.add_run(peer, select=False)

    def rank_zero_of(self, run: Run | None) -> Run | None:
        if run is None:
            return None
        return self.runs.get(self.rank_parent.get(run.run_id, run.run_id))

    def _take_working_sets(self) -> None:
        """Allocations a cursor move asked for have been read: every view redraws."""
        for run, error in self.working_sets.poll():
            if error is not None:
                self.error_banner.action_error(f"Cannot load those allocations: {error}")
            elif run is self.current_run():
                self.alloc_view.set_run(None)  # its layout was of the allocations before
                self._keep = None
                self._shown_changed()
                self.state_label.setText(f"Run #{run.run_id}" + window_note(run))

    def refresh(self) -> None:
        self._refresh()
        # ranges that changed with what arrived are applied now, not when the plots
        # paint: a range applied during a paint moves every item and paints it all twice
        for box in (self.timeline.plot_item.getViewBox(),
                    self.alloc_view.getPlotItem().getViewBox()):
            settle(box)

    def _refresh(self) -> None:
        self.external.poll()
        self.opener.take_background_opens()
        self._take_working_sets()
        self._adopt_ranks()
        if self.comparison is not None:
            if not self.comparison.finished:
                self.comparison.poll()
            self.comparison_view.show_comparison(self.comparison)
        for run_id in self.run_list.shown_run_ids():
            self.timeline.update_run(self.runs[run_id])
        self.run_list.refresh(self.runs)
        run = self.current_run()
        self.step_table.show_run(run)
        self.log_pane.show_run(run)
        self.alloc_view.update_run()
        self.modules_view.show_run(run)
        if self.tabs.currentWidget() is self.story_view:
            cursor = self._cursors.get(run.run_id) if run is not None else None
            if run is None or run.finished or cursor is not None:
                self.story_view.show_moment(run, cursor)
        for view in (self.segments_view, self.call_sites_view):
            if self.tabs.currentWidget() is view:
                view.show_moment(run, self._cursors.get(run.run_id) if run is not None
                                 else None)
        if self.tabs.currentWidget() is self.diff_view:
            shown = self.run_list.shown_run_ids()
            other = self.runs[shown[1]] if len(shown) > 1 else None
            self.diff_view.compare(other, run)
        if self.tabs.currentWidget() is self.ranks_view:
            self.ranks_view.show_run(self.rank_zero_of(run))
        if run is not None and run.finished and not self.timeline.cursor.isVisible() \
                and len(run.tensors):
            oom = last_moment(run)
            if oom is not None:  # the last moment before memory ran out says the most
                self.set_cursor(oom["t"])
            else:
                self.moment_view.run = run
                self.moment_view.jump_to_peak()
        active = self.active_run()
        self.run_panel.set_running(active is not None,
                                   stopping=active is not None and self.control.stopping(active))
        if run is None:
            self.error_banner.run_failure(None)
            return
        if not run.finished and self.timeline.cursor.isVisible() and \
                self.tabs.currentWidget() is self.moment_view and \
                self._moment_shown_at != (run.run_id, run.revision):
            self._cursor_moved()  # a live run: what is live at the cursor keeps changing
        structure = run.model.get("structure") if isinstance(run.model, dict) else None
        if isinstance(structure, dict):
            self.run_panel.technique_panel.set_structure(run.spec.model, structure)
        key = (run.run_id, run.revision)
        if key != self._banner_key:  # the OOM report walks the allocations: once a change
            self._banner_key = key
            self.error_banner.run_failure(failure_text(run))
        self.state_label.setText(self._state_text(run, self.control.stopping(run)))
        with run.lock:
            rss = run.samples.column("rss")[-1] if len(run.samples) else None
            nvml = run.environment.get("nvml", {})
        self.memory_label.setText(f"RSS {format_bytes(rss)}" if rss is not None else "")
        if nvml:
            self.gpu_label.setText(f"GPU: {nvml['name']}" if nvml.get("available")
                                   else f"GPU: {nvml.get('reason') or 'none'}")

    @staticmethod
    def _state_text(run: Run, stopping: bool = False) -> str:
        steps = run.spec.steps_done(len(run.steps))
        if stopping and not run.finished:
            return (f"Run #{run.run_id}: stopping at its next phase, {steps} (Esc again: "
                    "at once)…")
        if run.state == "starting":
            return f"Run #{run.run_id}: starting the worker and loading {run.spec.model}…"
        if run.state == "running":
            return f"Run #{run.run_id}: running, {steps}"
        if run.state == "failed":
            return f"Run #{run.run_id} failed after {steps}"
        imported = run.environment.get("imported") if isinstance(run.environment, dict) \
            else None
        if imported:
            return f"Run #{run.run_id}: {run.spec.model}, a {imported}, " \
                f"{len(run.tensors):,} allocations"
        return f"Run #{run.run_id} {run.state}, {steps}" + window_note(run)

    def closeEvent(self, event) -> None:
        gui_thread_gc.release(id(self))
        self.timer.stop()
        self.external.close()
        for session in self.sessions.values():
            session.request_stop()
        for session in self.sessions.values():
            session.wait(5)
        super().closeEvent(event)
