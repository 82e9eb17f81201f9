"""The run's log in two parts: memviz's own messages (what it did, what went wrong,
what it skipped) above, and the worker's output (prints, warnings, tracebacks)
below, appended as they come."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QSplitter, QVBoxLayout, QWidget

from ..core.run import Run

MAX_LINES = 5000
WORKER = "worker"  # the level of a line the worker process printed


def _text_box() -> QPlainTextEdit:
    box = QPlainTextEdit()
    box.setReadOnly(True)
    box.setMaximumBlockCount(MAX_LINES)
    font = QFont("monospace")
    font.setStyleHint(QFont.StyleHint.Monospace)
    font.setPointSize(9)
    box.setFont(font)
    return box


class LogPane(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.messages = _text_box()
        self.output = _text_box()
        top, bottom = QWidget(), QWidget()
        for part, title, box in ((top, "memviz", self.messages),
                                 (bottom, "The worker's output and warnings", self.output)):
            layout = QVBoxLayout(part)
            layout.setContentsMargins(0, 0, 0, 0)
            layout.addWidget(QLabel(title))
            layout.addWidget(box, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(bottom)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(split)
        self._run_id: int | None = None
        self._shown = 0

    def toPlainText(self) -> str:
        """Both parts, memviz's first."""
        return self.messages.toPlainText() + "\n" + self.output.toPlainText()

    def show_run(self, run: Run | None) -> None:
        if run is None or run.run_id != self._run_id:
            self.messages.clear()
            self.output.clear()
            self._shown = 0
            self._run_id = None if run is None else run.run_id
        if run is None:
            return
        with run.lock:
            new = run.log[self._shown:]
            self._shown = len(run.log)
        if not new:
            return
        mine = [f"{line.t:8.2f}  {line.level:7}  {line.text}" for line in new
                if line.level != WORKER]
        theirs = [line.text for line in new if line.level == WORKER]
        if mine:
            self.messages.appendPlainText("\n".join(mine))
        if theirs:
            self.output.appendPlainText("\n".join(theirs))
