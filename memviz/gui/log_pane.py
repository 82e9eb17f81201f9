"""The worker's output and memviz's own messages, appended as they come."""

from __future__ import annotations

from PySide6.QtGui import QFont
from PySide6.QtWidgets import QPlainTextEdit

from ..core.run import Run

MAX_LINES = 5000


class LogPane(QPlainTextEdit):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(MAX_LINES)
        font = QFont("monospace")
        font.setStyleHint(QFont.StyleHint.Monospace)
        font.setPointSize(9)
        self.setFont(font)
        self._run_id: int | None = None
        self._shown = 0

    def show_run(self, run: Run | None) -> None:
        if run is None or run.run_id != self._run_id:
            self.clear()
            self._shown = 0
            self._run_id = None if run is None else run.run_id
        if run is None:
            return
        with run.lock:
            new = run.log[self._shown:]
            self._shown = len(run.log)
        if new:
            self.appendPlainText("\n".join(
                f"{line.t:8.2f}  {line.level:7}  {line.text}" for line in new))
