"""Segments: the CUDA caching allocator's segments, as PyTorch's memory_viz shows them,
for a simulated CUDA run (the allocator's model) or an imported snapshot (the device's
own): reserved, allocated and the largest free block over time; at the cursor every
segment with its blocks (live by category, inactive splits, wholly free); and an
out-of-memory explained, real or predicted against a device size."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..core.categories import CATEGORIES, COLOURS, LABELS
from ..core.oom import last_moment
from ..core.run import Run
from ..core.segments import SegmentHistory, history_of, predict_oom
from ..core.summary import tracked_peaks
from .axes import BytesAxis, format_bytes
from .empty_state import EmptyState

MiB = float(1 << 20)
SPLIT_COLOUR = "#bdbdbd"  # free between live blocks of a segment: fragmentation
CACHED_COLOUR = "#eeeeee"  # a wholly free segment: cached, releasable
EMPTY_TEXT = ("No segments: simulate a run on a CUDA device (Device cuda, Simulate on), "
              "or open a PyTorch snapshot")
OVER_TIME = (("reserved", "reserved (segments)", "#8c564b"),
             ("allocated", "allocated (blocks)", "#9467bd"),
             ("largest_free", "largest free block", "#2ca02c"))


class SegmentsView(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.title = QLabel(EMPTY_TEXT)
        self.title.setWordWrap(True)
        self.device = QSpinBox()
        self.device.setRange(0, 1 << 22)
        self.device.setSingleStep(1024)
        self.device.setSuffix(" MiB")
        self.device.setSpecialValueText("none")
        self.device.setToolTip("Predict where a device of this size runs out of memory "
                               "(the CUDA context and cuBLAS workspace take 532 MiB of it)")
        self.history_plot = pg.PlotWidget(axisItems={"left": BytesAxis("left")},
                                          background="w")
        self.history_plot.setLabel("bottom", "time (s)")
        self.history_plot.addLegend(offset=(5, 5), brush=pg.mkBrush(255, 255, 255, 200))
        self.history_plot.setMinimumHeight(120)
        self.history_empty = EmptyState(self.history_plot, EMPTY_TEXT)
        self.curves = {key: self.history_plot.plot(pen=pg.mkPen(colour, width=1.5), name=label)
                       for key, label, colour in OVER_TIME}
        self.cursor = pg.InfiniteLine(angle=90, pen=pg.mkPen("#d62728"))
        self.history_plot.addItem(self.cursor, ignoreBounds=True)
        self.map_plot = pg.PlotWidget(background="w")
        self.map_plot.setLabel("bottom", "offset in the segment (MiB)")
        self.map_plot.setLabel("left", "segment")
        self.map_plot.invertY(True)
        self.map_empty = EmptyState(self.map_plot, "Place the cursor on the timeline")
        self.bars = pg.BarGraphItem(x0=[], y0=[], width=[], height=[])
        self.map_plot.addItem(self.bars)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop)
        details = QScrollArea()
        details.setWidget(self.details)
        details.setWidgetResizable(True)
        details.setMinimumWidth(280)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(QLabel("Device memory"))
        top.addWidget(self.device)
        plots = QSplitter(Qt.Orientation.Vertical)
        plots.addWidget(self.history_plot)
        plots.addWidget(self.map_plot)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(plots)
        split.addWidget(details)
        split.setSizes([700, 300])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        self.device.valueChanged.connect(lambda _v: self._redraw())
        self.run: Run | None = None
        self.t: float | None = None
        self._drawn_history: tuple | None = None
        self._key: tuple | None = None

    def show_moment(self, run: Run | None, t: float | None) -> None:
        """``run``'s segments at ``t`` (None: its tracked peak)."""
        self.run, self.t = run, t
        self._redraw()

    def _redraw(self) -> None:
        run = self.run
        history = history_of(run) if run is not None else None
        key = None if run is None else (run.run_id, run.revision, self.t,
                                         self.device.value(), history is not None)
        if key == self._key:
            return
        self._key = key
        if history is None:
            self.title.setText(EMPTY_TEXT)
            self.history_empty.show(True)
            self.map_empty.show(True)
            self.bars.setOpts(x0=[], y0=[], width=[], height=[])
            self.details.setText("")
            return
        t = self.t if self.t is not None else _default_moment(run)
        self._draw_history(run, history)
        self.cursor.setValue(t)
        state = history.state_at(t)
        self._draw_map(history, state)
        source = "the allocator's model (simulated)" if history.source == "simulated" else \
            "the device's snapshot (measured)"
        self.title.setText(f"Run #{run.run_id}: {history.segments} segments over the run, "
                           f"from {source}; at t = {t:.4f} s, below")
        self.details.setText(_details(state, t) + _oom_text(run, history,
                                                            self.device.value() << 20))

    def _draw_history(self, run: Run, history: SegmentHistory) -> None:
        key = (run.run_id, len(history.t_alloc))
        if key == self._drawn_history:
            return
        self._drawn_history = key
        series = history.over_time()
        for name, curve in self.curves.items():
            curve.setData(series["t"], series[name], stepMode=None)
        self.history_empty.show(not len(series["t"]))

    def _draw_map(self, history: SegmentHistory, state) -> None:
        """Each held segment a row; its live blocks coloured by category, the free space
        between them grey (an inactive split), a wholly free segment pale."""
        held = np.sort(state.held)
        seg, offset, size, rows = state.blocks()
        free_seg, free_offset, free_size, whole = state.free()
        x0 = np.concatenate([offset, free_offset]) / MiB
        width = np.concatenate([size, free_size]) / MiB
        y0 = np.searchsorted(held, np.concatenate([seg, free_seg]))
        colours = [COLOURS[CATEGORIES[c]] for c in history.category[rows].tolist()] + \
            [CACHED_COLOUR if w else SPLIT_COLOUR for w in whole.tolist()]
        brushes = {c: pg.mkBrush(c) for c in set(colours)}
        self.map_empty.show(not len(x0))
        self.bars.setOpts(x0=x0, y0=y0 + 0.1, width=width, height=0.8,
                          brushes=[brushes[c] for c in colours],
                          pen=pg.mkPen("#555555", width=0.5))
        if len(x0):
            self.map_plot.getViewBox().setRange(xRange=(0, float((x0 + width).max())),
                                                yRange=(0, max(len(held), 1)), padding=0.02)

    def shown_blocks(self) -> int:
        """How many blocks (live and free) the map draws."""
        return len(self.bars.opts.get("x0", []))


def _default_moment(run: Run) -> float:
    oom = last_moment(run)
    if oom is not None:
        return float(oom["t"])
    t = tracked_peaks(run).get("t")
    return float(t) if t is not None else 0.0


def _details(state, t: float) -> str:
    whole, split = state.free_bytes()
    lines = [f"<b>At {t:.4f} s</b>: {len(state.held)} segments, "
             f"{format_bytes(state.reserved)} reserved, {format_bytes(state.allocated)} "
             f"in live blocks",
             f"cached free {format_bytes(whole + split)}: {format_bytes(split)} in inactive "
             f"splits between live blocks, {format_bytes(whole)} in wholly free segments",
             f"largest free block <b>{format_bytes(state.largest_free)}</b>",
             "<br><b>Blocks by category</b>"]
    for name, nbytes in sorted(state.by_category().items(), key=lambda kv: -kv[1]):
        lines.append(f"<span style='color:{COLOURS[name]}'>■</span> {LABELS[name]}: "
                     f"{format_bytes(nbytes)}")
    lines.append(f"<span style='color:{SPLIT_COLOUR}'>■</span> inactive split · "
                 f"<span style='color:#999999'>□</span> wholly free segment")
    return "<br>".join(lines)


def _oom_text(run: Run, history: SegmentHistory, capacity: int) -> str:
    report = (last_moment(run) or {}).get("allocator")
    heading = "Out of memory"
    if report is None and capacity:
        report = predict_oom(history, run.tensors, capacity)
        heading = f"Predicted on a {format_bytes(capacity)} device"
        if report is None:
            return f"<br><br><b>{heading}</b>: every allocation fits"
    if report is None:
        return ""
    how = {"measured": "measured", "simulated": "simulated",
           "predicted": "simulated"}[report["source"]]
    lines = [f"<br><br><b>{heading}</b> ({how}) at {report['t']:.4f} s",
             f"request {format_bytes(report['request_bytes'])} against a largest free block "
             f"of {format_bytes(report['largest_free_block'])}",
             report["advice"]]
    if report["setting"]:
        # (a break allowed after "=": the setting is one long word)
        lines.append("would have helped: <b>PYTORCH_CUDA_ALLOC_CONF=\u200b"
                     f"{report['setting']}</b>")
    lines.append("live then: " + ", ".join(
        f"{LABELS[c]} {format_bytes(b)}" for c, b in
        sorted(report["by_category"].items(), key=lambda kv: -kv[1]) if b))
    modules = [f"{m or '(outside any module)'} {format_bytes(b)}"
               for m, b in report["by_module"][:4]]
    if modules:
        lines.append("largest modules: " + ", ".join(modules))
    return "<br>".join(lines)
