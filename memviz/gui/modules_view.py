"""Per module: its parameters and their gradients, what it allocated (itself, and with
what runs inside it), what it kept for backward, and its own peaks in forward and
backward. Live: the figures are kept up to date as events arrive
(``core.module_totals``), so following a run of any length costs little."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHeaderView, QTreeWidget, QTreeWidgetItem

from ..core.run import Run
from .axes import format_bytes

REDRAW_S = 0.5
CLASS_COLUMN = 6  # a live run's table is refreshed at most this often
# what a user reads first comes first (all fit 1280 px); the module's own figures after
HEADERS = ["module", "parameter bytes (with children)", "allocated over the run (with "
           "children)", "kept for backward", "peak forward", "peak backward", "class",
           "parameters (own)", "parameter bytes (own)", "gradients (own)",
           "allocated over the run (own)"]
TIPS = [
    "The module's name (the full name in its tooltip)",
    "Bytes of the parameters of this module and everything inside it",
    "Bytes allocated while this module or anything inside it ran, added up over the whole "
    "run (every step): where the traffic is, not what is live at once",
    "Of what it allocated itself, the bytes autograd kept for backward (activations)",
    "Its own allocations live at once, at their highest, in forward",
    "Its own allocations live at once, at their highest, in backward",
    "Its class",
    "Its own parameters (not its children's)",
    "Bytes of its own parameters",
    "Bytes of its own parameters' gradients (one for each trainable parameter)",
    "Bytes allocated while this module ran and none of its children did (its own ops), "
    "added up over the whole run",
]


class ModulesView(QTreeWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setHeaderLabels(HEADERS)
        for column, tip in enumerate(TIPS):
            self.headerItem().setToolTip(column, tip)
        self.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.setColumnWidth(0, 240)
        for column in range(1, 6):
            self.setColumnWidth(column, 120)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self._key = None
        self._drawn_at = 0.0

    def show_run(self, run: Run | None) -> None:
        """The selected run, live (at most every REDRAW_S while it runs)."""
        if run is None:
            if self._key is not None:
                self.clear()
                self._key = None
            return
        key = (run.run_id, run.revision)
        if key == self._key:
            return
        switched = self._key is None or self._key[0] != run.run_id
        if not switched and not run.finished and time.monotonic() - self._drawn_at < REDRAW_S:
            return
        self._key = key
        self._drawn_at = time.monotonic()
        with run.lock:
            log = run.tensors
            names = list(log.strings["module"])
            figures = log.modules.figures(len(names))
            tree = list(run.model.get("module_tree", []))
            unique_weights = run.model.get("parameter_bytes")
        ids = {name: i for i, name in enumerate(names)}
        own = {name: int(figures["allocated"][i + 1]) for name, i in ids.items()}
        inclusive: dict[str, int] = {}
        for name, value in own.items():  # add each module's own bytes to its ancestors
            for parent in _ancestors(name):
                inclusive[parent] = inclusive.get(parent, 0) + value
        self._fill(tree, ids, figures, own, inclusive, unique_weights)

    def _fill(self, tree, ids, figures, own, inclusive, unique_weights=None) -> None:
        expanded = {self._path(item) for item in self._all_items() if item.isExpanded()}
        self.clear()
        items: dict[str, QTreeWidgetItem] = {}
        weights: dict[str, int] = {}  # parameter bytes with children, by module
        for name, _cls, _params, trainable, frozen in tree:
            for parent in [*_ancestors(name), ""] if name else [""]:
                weights[parent] = weights.get(parent, 0) + trainable + frozen
        if isinstance(unique_weights, int):  # a weight tied to two modules counts once
            weights[""] = unique_weights
        for name, cls, params, trainable, frozen in tree:
            parent_name = name.rpartition(".")[0] if name else None
            parent = items.get(parent_name) if parent_name is not None else None
            label = name.rpartition(".")[2] if name else f"{cls} (root)"
            key = name or tree[0][1]
            i = ids.get(key)
            mine = [int(figures[c][i + 1]) if i is not None else 0
                    for c in ("activations", "peak_forward", "peak_backward")]
            with_children = inclusive.get(name, 0) if name else sum(own.values())
            cells = [label, format_bytes(weights.get(name, 0)) if weights.get(name) else "",
                     *(format_bytes(v) if v else "" for v in (with_children, *mine)),
                     cls, f"{params:,}" if params else "",
                     format_bytes(trainable + frozen) if params else "",
                     format_bytes(trainable) if trainable else "",
                     format_bytes(own.get(key, 0)) if own.get(key, 0) else ""]
            item = QTreeWidgetItem(cells)
            item.setToolTip(0, name or f"{cls}: the whole model")
            for col in range(1, len(HEADERS)):
                if col != CLASS_COLUMN:
                    item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight)
            (parent.addChild(item) if parent else self.addTopLevelItem(item))
            items[name] = item
        if expanded:
            for path, item in items.items():
                item.setExpanded(path in expanded)
        else:
            self.expandToDepth(1)

    def _all_items(self):
        stack = [self.topLevelItem(i) for i in range(self.topLevelItemCount())]
        while stack:
            item = stack.pop()
            yield item
            stack.extend(item.child(i) for i in range(item.childCount()))

    @staticmethod
    def _path(item: QTreeWidgetItem) -> str:
        tip = item.toolTip(0)
        return "" if ":" in tip and " " in tip else tip


def _ancestors(name: str):
    """``a.b.c`` → ``a.b.c``, ``a.b``, ``a`` (the module itself and every one around it)."""
    while name:
        yield name
        name = name.rpartition(".")[0]
