"""Technique comparison in the window: sets, progress, a sortable table and three charts.

The window owns the runs: each set's run joins the run list as it starts, and
a click on a row selects that run in the ordinary views. The comparison itself
(``memviz.compare.Comparison``) is advanced from the window's timer.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..compare import Comparison, TechniqueSet
from ..compare.html_report import SET_COLOURS
from ..compare.results import CATEGORIES_SHOWN, TABLE_HEADERS, entries, explain_gap, table_rows
from ..compare.series import aligned
from ..core.categories import COLOURS, LABELS
from ..core.spec import RunSpec
from .axes import BytesAxis
from .empty_state import EmptyState
from .fit_panel import FitPanel
from .tables import read_only_table

RUN_ID_ROLE = Qt.ItemDataRole.UserRole
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
LEGEND_ROOM = 1.6  # bar widths to the right of the last set, where the legend sits
EXAMPLE = "amp\ncheckpointing\namp,checkpointing\nlora:r=4,optimizer=adafactor"


class _SortableItem(QTableWidgetItem):
    """Sorts by the number behind the text ("12.5", "+3%", "—" last)."""

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a, b = self.data(SORT_ROLE), other.data(SORT_ROLE)
        if isinstance(a, float) and isinstance(b, float):
            return a < b
        return self.text() < other.text()


def _number(text: str) -> float | str:
    try:
        return float(text.replace("%", "").replace("+", "").split()[0])
    except (ValueError, IndexError):
        return float("inf") if text == "—" else text


class ComparisonView(QWidget):
    start_requested = Signal(str, bool)  # the sets' text, greedy
    cancel_requested = Signal()
    run_selected = Signal(int)

    def __init__(self, base_spec=None, parent=None) -> None:
        """``base_spec``: a callable giving the workload chosen in the run panel."""
        super().__init__(parent)
        self.fit_panel = FitPanel(base_spec or RunSpec)
        self.sets_edit = QPlainTextEdit()
        self.sets_edit.setPlaceholderText("one technique set per line, e.g.\n" + EXAMPLE)
        self.sets_edit.setPlainText("amp\ncheckpointing\namp,checkpointing")
        self.sets_edit.setMaximumHeight(90)
        self.run_button = QPushButton("Compare these sets")
        self.each_button = QPushButton("Each technique alone")
        self.greedy_button = QPushButton("Greedy stack")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("The baseline (no technique) runs first; each set in a fresh "
                             "worker, with the workload chosen on the left.")
        self.status.setWordWrap(True)
        buttons = QVBoxLayout()
        for b in (self.run_button, self.each_button, self.greedy_button, self.cancel_button):
            buttons.addWidget(b)
        top = QHBoxLayout()
        top.addWidget(self.sets_edit, 1)
        top.addLayout(buttons)

        self.table = read_only_table(TABLE_HEADERS, fit_contents=True)
        # sorted only when a header is clicked: the sets keep their run order until then
        self.table.horizontalHeader().setSectionsClickable(True)
        self.table.horizontalHeader().sectionClicked.connect(self._sort_by)
        self._sort: tuple[int, Qt.SortOrder] | None = None
        self.table.itemSelectionChanged.connect(self._row_selected)

        self.bars = pg.PlotWidget(background="w", axisItems={"left": BytesAxis("left")})
        self.bars.setTitle("tracked peak by category per set", color="#333", size="9pt")
        self.bars_legend = self.bars.addLegend(offset=(-10, 5), labelTextSize="8pt")
        self.timelines = pg.PlotWidget(background="w", axisItems={"left": BytesAxis("left")})
        self.timelines.setLabel("bottom", "time since each set's first step", units="s")
        self.timelines.addLegend(offset=(10, 5), labelTextSize="8pt")
        self.scatter = pg.PlotWidget(background="w", axisItems={"left": BytesAxis("left")})
        self.scatter.setLabel("bottom", "median step time", units="s")
        self.scatter.getViewBox().setDefaultPadding(0.12)  # room for the labels
        hint = "Compare sets (above) to draw them here"
        self.empty = [EmptyState(self.bars, hint), EmptyState(self.timelines, hint),
                      EmptyState(self.scatter, hint)]
        self.charts = QTabWidget()
        self.charts.addTab(self.bars, "Peak by category")
        self.charts.addTab(self.timelines, "Over time")
        self.charts.addTab(self.scatter, "Memory vs time")
        # what to compare, the table and the charts share the height: the user drags each
        # handle, and once results arrive the table is given the rows it has
        inputs = QWidget()
        inputs_layout = QVBoxLayout(inputs)
        inputs_layout.setContentsMargins(0, 0, 0, 0)
        inputs_layout.addLayout(top)
        inputs_layout.addWidget(self.fit_panel)
        inputs_area = QScrollArea()  # it shrinks (and scrolls) to give the results room
        inputs_area.setWidget(inputs)
        inputs_area.setWidgetResizable(True)
        inputs_area.setFrameShape(QFrame.Shape.NoFrame)
        self.split = split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(inputs_area)
        split.addWidget(self.table)
        split.addWidget(self.charts)
        split.setChildrenCollapsible(True)
        split.setSizes([170, 200, 300])
        self._rows_fitted: tuple[int, int] | None = None  # (rows, height) fitted to

        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(split, 1)

        self.run_button.clicked.connect(
            lambda: self.start_requested.emit(self.sets_edit.toPlainText(), False))
        self.each_button.clicked.connect(lambda: self.start_requested.emit("each", False))
        self.greedy_button.clicked.connect(lambda: self.start_requested.emit("", True))
        self.cancel_button.clicked.connect(self.cancel_requested.emit)
        self._key: tuple | None = None

    def set_running(self, running: bool) -> None:
        for b in (self.run_button, self.each_button, self.greedy_button):
            b.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def show_comparison(self, comparison: Comparison | None) -> None:
        """The progress line follows the running set's steps; the table and charts,
        which read every finished run, are redrawn only when a set ends."""
        if comparison is None:
            return
        results = list(comparison.results)
        current = comparison.current
        steps = len(current.run.steps) if current else None
        simulating = comparison.simulating
        status_key = (len(results), steps, comparison.finished, id(comparison), simulating)
        if status_key == self._key:
            return
        done, planned = len(results), comparison.planned()
        self.progress.setRange(0, max(planned, 1))
        self.progress.setValue(done)
        if simulating is not None:
            self.status.setText(f"Set {done + 1} of {planned} next; each set's step is "
                                "simulated on fake tensors first, for its prediction (now: "
                                f"{simulating})")
        elif current is not None:
            self.status.setText(f"Set {done + 1} of {planned}: {current.name} "
                                f"({steps}/{current.run.spec.steps} steps)")
        elif comparison.finished:
            cancelled = " (cancelled)" if comparison.cancelled else ""
            stack = f"; greedy stack: {comparison.stack.name}" if comparison.greedy else ""
            self.status.setText(f"{done} sets measured{cancelled}{stack}. Click a row to "
                                "open its run.")
        self.set_running(not comparison.finished)
        if self._key is None or self._key[0] != done or self._key[3] != id(comparison):
            items = entries(results)
            self._fill_table(items)
            self._draw_bars(items)
            self._draw_timelines(results)
            self._draw_scatter(items)
        self._key = status_key
        self.fit_table()

    def _sort_by(self, column: int) -> None:
        order = Qt.SortOrder.AscendingOrder
        if self._sort is not None and self._sort == (column, order):
            order = Qt.SortOrder.DescendingOrder
        self._sort = (column, order)
        self.table.sortItems(column, order)
        self.table.horizontalHeader().setSortIndicatorShown(True)
        self.table.horizontalHeader().setSortIndicator(column, order)

    def _fill_table(self, items) -> None:
        self.table.setRowCount(len(items))
        for r, (item, cells) in enumerate(zip(items, table_rows(items), strict=True)):
            for c, text in enumerate(cells):
                cell = _SortableItem(text)
                cell.setData(RUN_ID_ROLE, item["run_id"])
                cell.setData(SORT_ROLE, _number(text) if c else text)
                if c:
                    cell.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                if item["state"] != "finished":
                    cell.setToolTip(f"{item['state']}: {item['error'] or ''}")
                elif TABLE_HEADERS[c] in ("predicted MiB", "pred. error"):
                    cell.setToolTip(explain_gap(item))
                self.table.setItem(r, c, cell)
        if self._sort is not None:
            self.table.sortItems(*self._sort)

    def fit_table(self) -> None:
        """Give the table the height of its rows (taken from the inputs first, then the
        charts, which keep at least a third), once a row is added."""
        rows = self.table.rowCount()
        inputs, table, charts = self.split.sizes()
        total = inputs + table + charts
        if (rows, total) == self._rows_fitted or not rows or not self.isVisible():
            return
        self._rows_fitted = (rows, total)
        wanted = self.table.horizontalHeader().height() + 4 + sum(
            self.table.rowHeight(r) for r in range(rows)) + \
            self.table.horizontalScrollBar().sizeHint().height()
        charts = max(total // 3, min(charts, total - wanted))
        table = min(wanted, total - charts)
        self.split.setSizes([total - table - charts, table, charts])

    def _row_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.run_selected.emit(int(self.table.item(rows[0].row(), 0).data(RUN_ID_ROLE)))

    def _draw_bars(self, items) -> None:
        self.bars.clear()
        self.bars_legend.clear()
        for state in self.empty:
            state.show(not items)
        names = [e["name"] for e in items]
        base = np.zeros(len(items))
        for cat in CATEGORIES_SHOWN:
            heights = np.array([float((e["peak_by_category"] or {}).get(cat) or 0)
                                for e in items])
            if heights.any():
                bar = pg.BarGraphItem(x=np.arange(len(items)), height=heights, y0=base,
                                      width=0.6, brush=COLOURS[cat], pen=None)
                self.bars.addItem(bar)
                self.bars_legend.addItem(bar, LABELS[cat])
                base = base + heights
        self.bars.getAxis("bottom").setTicks([list(enumerate(names))])
        if items:  # room on the right for the legend: it never covers the last set's bar
            self.bars.setXRange(-0.5, len(items) - 0.5 + LEGEND_ROOM, padding=0)

    def _draw_timelines(self, results) -> None:
        self.timelines.clear()
        for i, result in enumerate(results):
            t, y, _what = aligned(result.run)
            if len(t):
                self.timelines.plot(t, y, name=result.name,
                                    pen=pg.mkPen(SET_COLOURS[i % len(SET_COLOURS)], width=1.5))

    def _draw_scatter(self, items) -> None:
        self.scatter.clear()
        for i, e in enumerate(items):
            seconds, peak = e["step_seconds_median"], e["peak"]["compared_bytes"]
            if seconds and peak:
                colour = SET_COLOURS[i % len(SET_COLOURS)]
                self.scatter.plot([seconds], [peak], pen=None, symbol="o", symbolSize=10,
                                  symbolBrush=colour)
                label = pg.TextItem(e["name"], color="#222", anchor=(0, 0.5))
                label.setPos(seconds, peak)
                self.scatter.addItem(label)


def sets_from_text(text: str) -> list[TechniqueSet]:
    """The editor's lines (blank lines and ``#`` comments skipped), baseline first."""
    from ..compare import sets_from_texts

    return sets_from_texts([line.strip() for line in text.splitlines()
                            if line.strip() and not line.strip().startswith("#")])
