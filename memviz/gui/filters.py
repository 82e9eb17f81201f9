"""The filter bar of the allocation views: category, minimum size, text."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QSpinBox, QWidget

from ..core.analysis import Filter
from ..core.categories import CATEGORIES, LABELS


class FilterBar(QWidget):
    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.category = QComboBox()
        self.category.addItem("all categories", None)
        for i, name in enumerate(CATEGORIES):
            self.category.addItem(LABELS[name], i)
        self.min_kib = QSpinBox()
        self.min_kib.setRange(0, 1 << 24)
        self.min_kib.setSuffix(" KiB")
        self.text = QLineEdit()
        self.text.setPlaceholderText("module or op contains…")
        self.text.setClearButtonEnabled(True)
        self.colour_by = QComboBox()
        self.colour_by.addItems(["category", "module"])
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for label, widget in (("Show", self.category), ("at least", self.min_kib),
                              ("", self.text), ("colour by", self.colour_by)):
            if label:
                layout.addWidget(QLabel(label))
            layout.addWidget(widget, 1 if widget is self.text else 0)
        self.category.currentIndexChanged.connect(self.changed)
        self.min_kib.valueChanged.connect(self.changed)
        self.text.textChanged.connect(self.changed)

    def current(self) -> Filter:
        code = self.category.currentData()
        return Filter(categories=frozenset() if code is None else frozenset({code}),
                      min_bytes=self.min_kib.value() * 1024, text=self.text.text().strip())
