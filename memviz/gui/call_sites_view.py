"""Call sites: the bytes live at the cursor (the tracked peak until one is placed) by
the code that made them, as an icicle (the outermost frame on top, each box as wide
as its bytes) beside a table of frames (own bytes, total bytes, allocations). The
user's own files come first; library frames are folded away unless asked for. A click
on a box or a table row shows those allocations in the Allocations view."""

from __future__ import annotations

import re
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.analysis import tracked_peak_time
from ..core.call_sites import CallNode, CallSites, call_sites
from ..core.categories import CATEGORIES, COLOURS, LABELS
from ..core.run import Run
from ..core.tensors import frame_parts
from .axes import format_bytes
from .empty_state import EmptyState

_FOLDERS = re.compile(r"[/\\]")
REDRAW_S = 0.5  # a live run's tree is built again at most this often
HEADERS = ["total", "own", "allocations", "frame"]
CHAR_PX = 7  # about one character of a label
FRAME_COLUMN = 3
MAX_TABLE_ROWS = 300
MAX_LABELS = 120
LABEL_SHARE = 0.04  # a box this share of the width or wider is labelled
NO_STACKS_NOTE = ("This run recorded no Python stacks: the tree starts at the modules. "
                  "Set Tracking to tensors+stacks to see your own lines.")


class CallSitesView(QWidget):
    rows_chosen = Signal(object)  # numpy rows of the allocations a click chose

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.title = QLabel("Select a run: its live bytes by the code that made them")
        self.title.setWordWrap(True)
        self.category = QComboBox()
        self.category.addItem("all categories", None)
        for code, name in enumerate(CATEGORIES):
            self.category.addItem(LABELS[name], code)
        self.library = QCheckBox("library frames")
        self.library.setToolTip("Show the frames of installed packages and the standard "
                                "library (torch's, transformers') too")
        self.plot = pg.PlotWidget(background="w")
        self.plot.invertY(True)
        self.plot.hideAxis("left")
        self.plot.setLabel("bottom", "share of the live bytes")
        self.plot.setMouseEnabled(x=True, y=False)
        self.empty = EmptyState(self.plot, "Nothing live here")
        self.bars = pg.BarGraphItem(x0=[], y0=[], width=[], height=[])
        self.plot.addItem(self.bars)
        self.labels: list[pg.TextItem] = []
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        for column, width in enumerate((80, 80, 80)):
            self.table.setColumnWidth(column, width)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setTextElideMode(Qt.TextElideMode.ElideLeft)
        self.table.setWordWrap(False)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.category)
        top.addWidget(self.library)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.plot)
        split.addWidget(self.table)
        split.setSizes([600, 420])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        self.category.currentIndexChanged.connect(lambda _i: self._redraw(force=True))
        self.library.toggled.connect(lambda _b: self._redraw(force=True))
        self.plot.scene().sigMouseClicked.connect(self._clicked)
        self.table.cellClicked.connect(self._row_clicked)
        self.run: Run | None = None
        self.t: float | None = None
        self.sites: CallSites | None = None
        self._boxes: list[tuple[float, float, int, CallNode]] = []
        self._key: tuple | None = None
        self._drawn_at = 0.0

    def show_moment(self, run: Run | None, t: float | None) -> None:
        self.run, self.t = run, t
        self._redraw()

    def _redraw(self, force: bool = False) -> None:
        run = self.run
        key = None if run is None else (run.run_id, run.revision, self.t)
        if key == self._key and not force:
            return
        if not force and run is not None and not run.finished and self._key is not None \
                and self._key[:1] == key[:1] and self._key[2] == self.t \
                and time.monotonic() - self._drawn_at < REDRAW_S:
            return  # a live run: its tree is built again at most every REDRAW_S
        self._key = key
        self._drawn_at = time.monotonic()
        if run is None or not len(run.tensors):
            self.title.setText("Select a run tracked with tensors: its live bytes by the "
                               "code that made them")
            self._draw(None)
            return
        t = self.t if self.t is not None else tracked_peak_time(run.tensors)[0]
        rows = run.tensors.live_at(t)
        code = self.category.currentData()
        if code is not None:
            rows = rows[run.tensors.rows.column("category")[rows] == code]
        self.sites = call_sites(run, rows, library=self.library.isChecked())
        where = "the tracked peak" if self.t is None else "the cursor"
        note = "" if self.sites.has_stacks else f" {NO_STACKS_NOTE}"
        self.title.setText(f"Run #{run.run_id} at t = {t:.3f} s ({where}): "
                           f"{format_bytes(self.sites.root.total)} live in "
                           f"{self.sites.root.count:,} allocations.{note}")
        self._draw(self.sites)

    def _draw(self, sites: CallSites | None) -> None:
        for label in self.labels:
            self.plot.removeItem(label)
        self.labels, self._boxes = [], []
        total = sites.root.total if sites is not None else 0
        self.empty.show(not total)
        if not total:
            self.bars.setOpts(x0=[], y0=[], width=[], height=[])
            self.table.setRowCount(0)
            return
        stack = [(sites.root, 0.0, 0)]
        while stack:  # each node's children laid left to right, the largest first
            node, x, depth = stack.pop()
            width = node.total / total
            if depth:
                self._boxes.append((x, x + width, depth - 1, node))
            for child in sorted(node.children.values(), key=lambda c: -c.total):
                stack.append((child, x, depth + 1))
                x += child.total / total
        x0 = np.array([b[0] for b in self._boxes])
        widths = np.array([b[1] - b[0] for b in self._boxes])
        depths = np.array([b[2] for b in self._boxes], dtype=np.float64)
        colours = {c: pg.mkBrush(COLOURS[c]) for c in CATEGORIES}
        self.bars.setOpts(x0=x0, y0=depths, width=widths, height=0.92,
                          brushes=[colours[b[3].category] for b in self._boxes],
                          pen=pg.mkPen("w", width=0.5))
        wide = sorted((b for b in self._boxes if b[1] - b[0] >= LABEL_SHARE),
                      key=lambda b: -(b[1] - b[0]))[:MAX_LABELS]
        pixels = max(self.plot.getViewBox().width(), 200)
        for left, right, depth, node in wide:
            text = _short(_where(node.name), int((right - left) * pixels / CHAR_PX) - 1)
            if not text:
                continue
            label = pg.TextItem(text, color="k", anchor=(0, 0.5))
            label.setPos(left, depth + 0.46)
            self.plot.addItem(label, ignoreBounds=True)
            self.labels.append(label)
        self.plot.getViewBox().setRange(xRange=(0, 1), yRange=(0, max(depths) + 1),
                                        padding=0.01)
        self._fill_table(sites)

    def _fill_table(self, sites: CallSites) -> None:
        lines = sites.frames[:MAX_TABLE_ROWS]
        self.table.setRowCount(len(lines))
        for r, line in enumerate(lines):
            cells = [format_bytes(line.total), format_bytes(line.own), f"{line.count:,}",
                     line.frame]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c < FRAME_COLUMN:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight |
                                          Qt.AlignmentFlag.AlignVCenter)
                else:
                    item.setToolTip(text)
                self.table.setItem(r, c, item)

    def box_at(self, x: float, y: float) -> CallNode | None:
        depth = int(np.floor(y))
        return next((node for left, right, d, node in self._boxes
                     if d == depth and left <= x < right), None)

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        vb = self.plot.getViewBox()
        if not vb.sceneBoundingRect().contains(event.scenePos()):
            return
        point = vb.mapSceneToView(event.scenePos())
        node = self.box_at(point.x(), point.y())
        if node is not None:
            self.rows_chosen.emit(node.rows())

    def _row_clicked(self, row: int, _column: int) -> None:
        if self.sites is not None and row < len(self.sites.frames):
            self.rows_chosen.emit(self.sites.rows_of_frame(self.sites.frames[row].frame))

    def box_names(self, depth: int) -> list[str]:
        """The boxes drawn at ``depth``, left to right."""
        return [node.name for left, _, d, node in sorted(self._boxes, key=lambda b: b[0])
                if d == depth]


def _where(frame: str) -> str:
    """A frame as a box names it: its file's name, line and function (the folders are in
    the table and its tooltip)."""
    parts = frame_parts(frame)
    if parts is None:
        return frame
    filename, line, name = parts
    return f"{_FOLDERS.split(filename)[-1]}:{line}:{name}"


def _short(name: str, room: int) -> str:
    """As much of ``name``'s tail as ``room`` characters hold ("" when too narrow)."""
    if room < 4:
        return ""
    return name if len(name) <= room else "…" + name[-(room - 1):]
