"""The step table: one row per finished step (step, loss, seconds, peak)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from ..core.run import Run
from .axes import format_bytes

HEADERS = ["step", "loss", "seconds", "peak RSS", "peak GPU"]
GPU_COLUMN = 4


class StepTable(QTableWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(0, len(HEADERS), parent)
        self.setHorizontalHeaderLabels(HEADERS)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self._run_id: int | None = None

    def show_run(self, run: Run | None) -> None:
        """Append the rows ``run`` gained since the last call (all of them on a switch)."""
        if run is None:
            self.setRowCount(0)
            self._run_id = None
            return
        if run.run_id != self._run_id:
            self.setRowCount(0)
            self._run_id = run.run_id
        with run.lock:
            new = run.steps[self.rowCount():]
        for step in new:
            row = self.rowCount()
            self.insertRow(row)
            cells = [
                str(step.step),
                "—" if step.loss is None else f"{step.loss:.4f}",
                f"{step.seconds:.3f}",
                format_bytes(step.peak_rss_bytes),
                "—" if step.peak_gpu_bytes is None else format_bytes(step.peak_gpu_bytes),
            ]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.setItem(row, col, item)
        if new:
            self.scrollToBottom()
        # a run on no GPU has no GPU figure: no column of dashes
        self.setColumnHidden(GPU_COLUMN, not run.spec.device.startswith("cuda"))
