"""A sharded run's ranks: one line per rank and their sum on rank 0's clock, and a table.

Each rank is also an ordinary run in the run list (all the views work on it);
this view is the one place that shows them together.
"""

from __future__ import annotations

import time

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QLabel,
    QSplitter,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.rank_summary import highest_text, recorded_ranks, with_highest
from ..core.ranks import (
    all_ranks,
    column_for,
    rank_series,
    rank_table,
    simulated_rank_table,
    summed,
)
from ..core.run import Run
from .axes import BytesAxis, format_bytes
from .empty_state import EmptyState
from .tables import read_only_table

RANK_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
SUM_COLOUR = "#000000"
HEADERS = ["", "peak (shown)", "peak RSS", "optimizer state", "parameters", "steps"]
REDRAW_S = 0.5
NOT_SHARDED = ("Not a sharded run: run with zero or fsdp (world_size ≥ 2), or record a "
               "torchrun job (memviz record -- torchrun ...), to see every rank")


class RanksView(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.note = QLabel(NOT_SHARDED)
        self.note.setWordWrap(True)  # a long note wraps; it never widens the window
        self.plot = pg.PlotWidget(background="w", axisItems={"left": BytesAxis("left")})
        self.plot.setLabel("bottom", "time since rank 0 started", units="s")
        self.plot.getAxis("left").setWidth(64)  # room for "512 MiB" before the first draw
        self.plot.addLegend(offset=(10, 5), labelTextSize="8pt")
        self.empty = EmptyState(self.plot, "Run with zero or fsdp (world_size 2 or more) to "
                                           "see each rank here")
        self.table = read_only_table(HEADERS, fit_contents=True)
        self.why = QLabel()  # which rank peaks highest, and why
        self.why.setWordWrap(True)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.plot)
        split.addWidget(self.table)
        split.setSizes([600, 400])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.note)
        layout.addWidget(self.why)
        layout.addWidget(split, 1)
        self._shown: tuple[int, ...] | None = None
        self._drawn_at = 0.0

    def show_run(self, primary: Run | None) -> None:
        """Draw rank 0's run ``primary`` and its peers when one changed; while they run,
        at most every REDRAW_S (the sum is recomputed over every sample)."""
        runs = all_ranks(primary) if primary is not None and primary.ranks else []
        key = tuple(id(r) for r in runs) + tuple(r.revision for r in runs)
        same_runs = self._shown is not None and self._shown[:len(runs)] == key[:len(runs)]
        running = any(not r.finished for r in runs)
        if key == self._shown or (same_runs and running
                                  and time.monotonic() - self._drawn_at < REDRAW_S):
            return
        self._shown = key
        self._drawn_at = time.monotonic()
        self.plot.clear()
        self.plot.getAxis("bottom").setTicks(None)
        self.plot.setLabel("bottom", "time since rank 0 started", units="s")
        self.table.setRowCount(0)
        self.why.clear()
        self.why.hide()
        simulated = simulated_rank_table(primary) if primary is not None and not runs else []
        self.empty.show(not runs and not simulated)
        if simulated:
            self._show_simulated(primary, simulated)
            return
        if not runs:
            self.note.setText(NOT_SHARDED)
            return
        column = column_for(runs)
        what = "tracked tensor bytes" if column == "tracked_total" else "RSS"
        self.note.setText(f"{len(runs)} ranks of run #{primary.run_id}: {what} per rank, "
                          "and their sum at each moment")
        series = rank_series(runs, column)
        for i, s in enumerate(series):
            self.plot.plot(s.t, s.values, name=s.label,
                           pen=pg.mkPen(RANK_COLOURS[i % len(RANK_COLOURS)], width=1.5))
        total = summed(series)
        self.plot.plot(total.t, total.values, name="sum", pen=pg.mkPen(SUM_COLOUR, width=2.5))
        self._fill_table(rank_table(runs))
        if not running:  # each module's high over a whole run: once, when it ended
            figures = recorded_ranks(primary)
            self.why.setText(highest_text(figures["highest"], format_bytes) if figures else "")
            self.why.setVisible(bool(self.why.text()))

    def _show_simulated(self, primary: Run, rows) -> None:
        """Simulated ranks ran one after another: a bar per rank's tracked peak."""
        ranks = rows[:-1]
        self.note.setText(f"{len(ranks)} ranks of run #{primary.run_id}, simulated one after "
                          "another: each rank's tracked peak (rank 0's timeline is the run's)")
        highest = with_highest((primary.worker_summary or {}).get("distributed"))
        self.why.setText(highest_text((highest or {}).get("highest"), format_bytes))
        self.why.setVisible(bool(self.why.text()))
        bars = pg.BarGraphItem(x=list(range(len(ranks))), height=[r.peak_bytes for r in ranks],
                               width=0.7, brush=RANK_COLOURS[0])
        self.plot.addItem(bars)
        self.plot.getAxis("bottom").setTicks([[(i, r.label) for i, r in enumerate(ranks)]])
        self.plot.setLabel("bottom", "rank")
        self._fill_table(rows)

    def _fill_table(self, rows) -> None:
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            cells = [row.label, format_bytes(row.peak_bytes), format_bytes(row.peak_rss_bytes),
                     format_bytes(row.optimizer_state_bytes), format_bytes(row.parameter_bytes),
                     str(row.steps)]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
