"""The timeline's legend: one entry per series, beside the plot, collapsible.

Overlaid runs share every entry (they are told apart by line style, keyed at the
top), so the legend never grows with the number of runs and never covers the
plot. Ticking an entry shows or hides that series in every run.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QListWidget,
    QListWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

KEY_ROLE = Qt.ItemDataRole.UserRole
ORDER_ROLE = Qt.ItemDataRole.UserRole + 1
SWATCH = QSize(22, 12)


def swatch(colour: str, *, filled: bool = False, style=Qt.PenStyle.SolidLine,
           alpha: int = 255) -> QIcon:
    pixmap = QPixmap(SWATCH)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    shade = QColor(colour)
    shade.setAlpha(alpha)
    if filled:
        painter.fillRect(1, 1, SWATCH.width() - 2, SWATCH.height() - 2, shade)
    else:
        pen = QPen(shade, 2, style)
        painter.setPen(pen)
        painter.drawLine(1, SWATCH.height() // 2, SWATCH.width() - 1, SWATCH.height() // 2)
    painter.end()
    return QIcon(pixmap)


class SeriesLegend(QWidget):
    toggled = Signal(str, bool)  # series key, shown

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setIconSize(SWATCH)
        self.list.setToolTip("Tick a series to show it, untick to hide it (every run)")
        self.list.itemChanged.connect(self._changed)
        self.fold = QToolButton()
        self.fold.setArrowType(Qt.ArrowType.RightArrow)
        self.fold.setToolTip("Hide the legend (show it again with this button)")
        self.fold.setAutoRaise(True)
        self.fold.clicked.connect(self.toggle_folded)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.fold, 0, Qt.AlignmentFlag.AlignRight)
        layout.addWidget(self.list, 1)
        self.list.setFixedWidth(250)
        self._items: dict[str, QListWidgetItem] = {}
        self._runs: list[QListWidgetItem] = []

    def toggle_folded(self) -> None:
        folded = self.list.isVisible()
        self.list.setVisible(not folded)
        self.fold.setArrowType(Qt.ArrowType.LeftArrow if folded else Qt.ArrowType.RightArrow)
        self.fold.setToolTip("Show the legend" if folded else "Hide the legend")

    def ensure(self, key: str, label: str, icon: QIcon, shown: bool = True,
               order: float = 0.0) -> None:
        """An entry for ``key`` (once), placed by ``order`` among the others."""
        if key in self._items:
            return
        item = QListWidgetItem(icon, label)
        item.setData(KEY_ROLE, key)
        item.setData(ORDER_ROLE, order)
        item.setToolTip(label)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        self.list.blockSignals(True)
        item.setCheckState(Qt.CheckState.Checked if shown else Qt.CheckState.Unchecked)
        row = len(self._runs)
        while row < self.list.count() and self.list.item(row).data(ORDER_ROLE) is not None \
                and self.list.item(row).data(ORDER_ROLE) <= order:
            row += 1
        self.list.insertItem(row, item)
        self.list.blockSignals(False)
        self._items[key] = item

    def set_runs(self, runs: list[tuple[str, Qt.PenStyle]]) -> None:
        """The line style of each overlaid run (shown only when there are several)."""
        for item in self._runs:
            self.list.takeItem(self.list.row(item))
        self._runs = []
        if len(runs) < 2:
            return
        for i, (label, style) in enumerate(runs):
            item = QListWidgetItem(swatch("#333333", style=style), label)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled)
            item.setToolTip(f"{label}: its lines are drawn like this")
            self.list.insertItem(i, item)
            self._runs.append(item)

    def clear_series(self) -> None:
        for key in list(self._items):
            self.list.takeItem(self.list.row(self._items.pop(key)))

    def labels(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def _changed(self, item: QListWidgetItem) -> None:
        key = item.data(KEY_ROLE)
        if key is not None:
            self.toggled.emit(key, item.checkState() == Qt.CheckState.Checked)
