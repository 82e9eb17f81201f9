"""The error line above the views.

Two kinds of message, two lifetimes:
- what the user just asked for could not be done ("Cannot run: …", "Cannot open …"):
  it stays until the user acts again (runs, compares, opens, attaches) or closes it;
- the selected run failed: it shows while that run is the selected one.
The first takes precedence over the second.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

from .style import ERROR_STYLE


class Banner(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setStyleSheet(ERROR_STYLE)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss this message")
        close.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self._action_error: str | None = None
        self._run_failure: str | None = None
        self._dismissed_failure: str | None = None
        self.hide()

    def action_error(self, text: str) -> None:
        """What the user asked for could not be done: stays until they act again."""
        self._action_error = text
        self._show()

    def user_acted(self) -> None:
        """The user asked for something new: an earlier refusal no longer applies."""
        self._action_error = None
        self._show()

    def run_failure(self, text: str | None) -> None:
        """The selected run's failure (None: it did not fail)."""
        self._run_failure = text
        self._show()

    def dismiss(self) -> None:
        if self._action_error is not None:
            self._action_error = None
        else:
            self._dismissed_failure = self._run_failure
        self._show()

    def text(self) -> str:
        return "" if self.isHidden() else self.label.text()

    def _show(self) -> None:
        text = self._action_error or (
            self._run_failure if self._run_failure != self._dismissed_failure else None)
        if text and self.label.text() != text:
            self.label.setText(text)
        self.setVisible(bool(text))
