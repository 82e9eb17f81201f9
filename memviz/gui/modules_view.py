"""Per module: its parameters and their gradients, what it allocated, what it kept
for backward, and its own peaks in forward and backward."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHeaderView, QTreeWidget, QTreeWidgetItem

from ..core import analysis
from ..core.run import Run
from .axes import format_bytes

FORWARD, BACKWARD = 2, 3  # phase codes of the tracker
HEADERS = ["module", "class", "parameters", "parameter bytes", "gradients",
           "allocated", "kept for backward", "peak forward", "peak backward"]


class ModulesView(QTreeWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setHeaderLabels(HEADERS)
        self.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.setColumnWidth(0, 260)
        self._key = None

    def show_run(self, run: Run | None) -> None:
        if run is None or not run.finished:
            return  # computed once the run is over: it walks every allocation
        key = (run.run_id, run.revision)
        if key == self._key:
            return
        self._key = key
        with run.lock:
            stats = {s.name: s for s in analysis.module_stats(run.tensors, FORWARD, BACKWARD)}
            tree = run.model.get("module_tree", [])
        self.clear()
        items: dict[str, QTreeWidgetItem] = {}
        for name, cls, params, trainable, frozen in tree:
            parent_name = name.rpartition(".")[0] if name else None
            parent = items.get(parent_name) if parent_name is not None else None
            label = name.rpartition(".")[2] if name else f"{cls} (root)"
            s = stats.get(name or tree[0][1])
            cells = [label, cls, f"{params:,}" if params else "",
                     format_bytes(trainable + frozen) if params else "",
                     format_bytes(trainable) if trainable else "",  # one gradient each
                     *(format_bytes(v) if v else "" for v in (
                         (s.allocated, s.activations, s.peak_forward, s.peak_backward)
                         if s else (0, 0, 0, 0)))]
            item = QTreeWidgetItem(cells)
            for col in range(2, len(HEADERS)):
                item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight)
            (parent.addChild(item) if parent else self.addTopLevelItem(item))
            items[name] = item
        self.expandToDepth(1)
