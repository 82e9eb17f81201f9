"""Compare: the selected run against a ticked one, at their tracked peaks."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.categories import LABELS
from ..core.diff import diff
from ..core.run import Run
from .axes import format_bytes
from .dotted_names import DottedNameDelegate
from .tables import read_only_table

GREW, SHRANK = QColor("#b03a2e"), QColor("#1e7b34")
MAX_ROWS = 200


def _signed(n: int) -> str:
    return ("+" if n > 0 else "−" if n < 0 else "") + format_bytes(abs(n))


class DiffView(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.title = QLabel("Tick a second run in the list to compare it with the selected one")
        self.title.setWordWrap(True)
        self.tables = {key: read_only_table([label, "A", "B", "change"]) for key, label in
                       (("categories", "category"), ("modules", "module"),
                        ("sites", "allocation site"))}
        split = QSplitter(Qt.Orientation.Horizontal)
        for table in self.tables.values():
            header = table.horizontalHeader()
            header.setStretchLastSection(False)
            header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
            for column in (1, 2, 3):  # the numbers always show in full
                header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
            split.addWidget(table)
        # module names shortened by whole segments, their telling tail kept
        self.names = {"modules": DottedNameDelegate(self.tables["modules"])}
        for key, delegate in self.names.items():
            self.tables[key].setItemDelegateForColumn(0, delegate)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(split, 1)
        self.result: dict | None = None
        self._key = None

    def compare(self, a: Run | None, b: Run | None) -> None:
        """A is the ticked run (before), B the selected one (after)."""
        if a is None or b is None or not (a.finished and b.finished):
            self.result = None
            for table in self.tables.values():
                table.setRowCount(0)
            self.title.setText("Tick a second, finished run to compare it with the selected one")
            return
        key = (a.run_id, a.revision, b.run_id, b.revision)
        if key == self._key:
            return
        self._key = key
        self.result = result = diff(a, b)
        ra, rb = result["a"], result["b"]
        self.title.setText(
            f"A: run #{a.run_id} ({ra['label']})   B: run #{b.run_id} ({rb['label']})   —   "
            f"tracked peak {format_bytes(ra['tracked_peak_bytes'])} → "
            f"{format_bytes(rb['tracked_peak_bytes'])} "
            f"({_signed(rb['tracked_peak_bytes'] - ra['tracked_peak_bytes'])}), "
            f"peak RSS {format_bytes(ra['peak_rss_bytes'])} → "
            f"{format_bytes(rb['peak_rss_bytes'])}")
        for key_, table in self.tables.items():
            rows = [r for r in result[key_] if r["delta"]][:MAX_ROWS]
            if key_ in self.names:
                self.names[key_].set_names(r["name"] for r in rows)
            table.setRowCount(len(rows))
            for i, r in enumerate(rows):
                name = LABELS.get(r["name"], r["name"]) if key_ == "categories" else r["name"]
                cells = [name, format_bytes(r["a"]), format_bytes(r["b"]),
                         _signed(r["delta"])]
                for j, text in enumerate(cells):
                    item = QTableWidgetItem(text)
                    if j:
                        item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                              | Qt.AlignmentFlag.AlignVCenter)
                    if j == 3:
                        item.setForeground(GREW if r["delta"] > 0 else SHRANK)
                    if j == 0:
                        item.setToolTip(name)
                    table.setItem(i, j, item)
