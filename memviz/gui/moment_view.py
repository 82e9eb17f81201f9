"""At a moment: the tensors live at the cursor's time, largest first, with totals."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core import analysis
from ..core.categories import CATEGORIES, LABELS
from ..core.run import Run
from .axes import format_bytes
from .tables import read_only_table

MAX_ROWS = 500  # rows in the table; the totals always cover every live tensor
HEADERS = ["bytes", "category", "shape", "dtype", "module", "op"]


def _fill(table: QTableWidget, rows: list[list[str]]) -> None:
    table.setRowCount(len(rows))
    for r, cells in enumerate(rows):
        for c, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setToolTip(text)  # a long module name in full
            if c == 0:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            table.setItem(r, c, item)


class MomentView(QWidget):
    jump_requested = Signal(float)
    row_selected = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.title = QLabel("Move the cursor on the timeline, or jump to the peak")
        self.peak_button = QPushButton("Jump to the tracked peak")
        self.peak_button.clicked.connect(self.jump_to_peak)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.peak_button)
        self.tensors = read_only_table(HEADERS)
        self.tensors.cellDoubleClicked.connect(
            lambda r, _c: self.row_selected.emit(int(self.moment.rows[r])) if self.moment else None)
        self.categories = read_only_table(["bytes", "category"])
        self.modules = read_only_table(["bytes", "module"])
        totals = QSplitter(Qt.Orientation.Vertical)
        totals.addWidget(self.categories)
        totals.addWidget(self.modules)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.tensors)
        split.addWidget(totals)
        split.setSizes([700, 300])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        self.run: Run | None = None
        self.keep: np.ndarray | None = None
        self.moment: analysis.Moment | None = None

    def clear(self) -> None:
        """No moment chosen on the selected run (yet)."""
        self.moment = None
        self.title.setText("Click the timeline (or move its cursor), or jump to the peak")
        for table in (self.tensors, self.categories, self.modules):
            table.setRowCount(0)

    def jump_to_peak(self) -> None:
        if self.run is None:
            return
        with self.run.lock:
            t, _ = analysis.tracked_peak_time(self.run.tensors)
        self.jump_requested.emit(t)

    def show_moment(self, run: Run | None, t: float, keep: np.ndarray | None = None) -> None:
        self.run = run
        if run is None:
            return
        with run.lock:
            log = run.tensors
            if keep is not None and len(keep) != len(log):
                keep = None
            m = self.moment = analysis.moment(log, t, keep)
            cols = log.rows
            rows = []
            for row in m.rows[:MAX_ROWS]:
                rows.append([
                    format_bytes(int(cols.column("nbytes")[row])),
                    LABELS[CATEGORIES[int(cols.column("category")[row])]],
                    log.string("shape", int(cols.column("shape")[row])),
                    log.string("dtype", int(cols.column("dtype")[row])),
                    log.string("module", int(cols.column("module")[row])),
                    log.string("op", int(cols.column("op")[row])),
                ])
        shown = f" (largest {MAX_ROWS} listed)" if len(m.rows) > MAX_ROWS else ""
        self.title.setText(f"At t = {t:.3f} s: {len(m.rows):,} live tensors, "
                           f"{format_bytes(m.total)}{shown}")
        _fill(self.tensors, rows)
        _fill(self.categories, [[format_bytes(b), LABELS[c]]
                                for c, b in sorted(m.by_category.items(), key=lambda x: -x[1])])
        _fill(self.modules, [[format_bytes(b), name] for name, b in m.by_module[:200]])
