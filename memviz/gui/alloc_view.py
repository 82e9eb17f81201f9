"""The allocation view: every allocation a band over its lifetime, on a real time axis.

A band's height is its bytes; its vertical place is the layout offset the worker
gave it (first fit into freed space), so bands never overlap. Of the visible time
range, what makes a visible mark is drawn (one pixel tall, or two pixels long),
one BarGraphItem per colour: nothing is capped, zooming in shows the rest.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer, Signal

from ..core import analysis
from ..core.categories import CATEGORIES, COLOURS, LABELS
from ..core.run import Run
from .axes import BytesAxis, format_bytes
from .empty_state import EmptyState

MODULE_PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860",
                  "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd", "#1b9e77", "#d95f02"]


def empty_text(run: Run | None) -> str:
    """What the view says while it has no allocation to draw: what to do, or why."""
    if run is None:
        return "Every allocation appears here: run with Tracking set to tensors"
    if run.spec.track == "samples":
        return ("This run sampled memory only: run it with Tracking set to tensors to see "
                "every allocation")
    if not run.finished:
        return "Waiting for the first allocations (the worker is loading the model)…"
    return "This run made no allocation that was tracked"


def hover_text(run: Run, row: int) -> str:
    """One line about an allocation, for the tooltip."""
    log = run.tensors
    cols = log.rows
    with run.lock:
        return (f"{format_bytes(int(cols.column('nbytes')[row]))} "
                f"{log.string('dtype', int(cols.column('dtype')[row]))} "
                f"[{log.string('shape', int(cols.column('shape')[row]))}] · "
                f"{LABELS[CATEGORIES[int(cols.column('category')[row])]]} · "
                f"{log.string('module', int(cols.column('module')[row])) or '—'} · "
                f"{log.string('op', int(cols.column('op')[row]))}")


class AllocationView(pg.PlotWidget):
    allocation_clicked = Signal(int)  # row index

    def __init__(self, parent=None) -> None:
        super().__init__(parent=parent, axisItems={"left": BytesAxis("left")})
        self.setBackground("w")
        plot = self.getPlotItem()
        plot.setLabel("bottom", "time since the run started", units="s")  # as the timeline
        plot.setLabel("left", "allocations (stacked)")
        vb = plot.getViewBox()
        vb.setLimits(yMin=0)
        # Time follows the main timeline (mirrored by the window). Height is fitted here,
        # from the bands in the visible time window: pyqtgraph's own autorange would
        # depend on what was drawn, which depends on the height (level of detail).
        vb.disableAutoRange()
        self.fit_height = True
        vb.sigRangeChangedManually.connect(self._user_zoomed)
        # the timeline's cursor, drawn here too (it is moved on the timeline)
        self.cursor = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#d62728"))
        self.cursor.setZValue(20)
        self.cursor.hide()
        plot.addItem(self.cursor, ignoreBounds=True)
        self.legend = plot.addLegend(offset=(10, 10), labelTextSize="8pt")  # left: before the run
        self.legend.setBrush(pg.mkBrush(255, 255, 255, 200))
        self.run: Run | None = None
        self.colour_by = "category"
        self.keep: np.ndarray | None = None
        self.shown_rows = np.zeros(0, dtype=np.int64)
        self._items: dict[str, pg.BarGraphItem] = {}
        self._revision = -1
        self._lod_timer = QTimer(self)
        self._lod_timer.setSingleShot(True)
        self._lod_timer.setInterval(30)
        self._lod_timer.timeout.connect(self.redraw)
        plot.getViewBox().sigRangeChanged.connect(lambda *_: self._lod_timer.start())
        self.scene().sigMouseClicked.connect(self._clicked)
        self.scene().sigMouseMoved.connect(self._hovered)
        self.selection = pg.BarGraphItem(x0=[0], x1=[0], y0=[0], height=[0],
                                         brush=pg.mkBrush(None), pen=pg.mkPen("k", width=2))
        self.selection.setZValue(10)
        plot.addItem(self.selection, ignoreBounds=True)
        self.empty = EmptyState(plot, empty_text(None), autorange=False)

    def set_run(self, run: Run | None) -> None:
        if run is not self.run:
            self.run = run
            self._revision = -1
            self.fit_height = True
            self.keep = None
            self.selection.setOpts(x0=[0], x1=[0], y0=[0], height=[0])
            self.update_run(force=True)

    def set_cursor(self, t: float | None) -> None:
        self.cursor.setVisible(t is not None)
        if t is not None:
            self.cursor.setValue(t)

    def set_filter(self, keep: np.ndarray | None) -> None:
        self.keep = keep
        self.redraw()

    def set_colour_by(self, mode: str) -> None:
        self.colour_by = mode
        self.redraw()

    def update_run(self, force: bool = False) -> None:
        run = self.run
        if run is None or (run.revision == self._revision and not force):
            return
        self._revision = run.revision
        self.redraw()

    def _now(self) -> float:
        run = self.run
        return float(run.samples.column("t")[-1]) if run and len(run.samples) else 0.0

    def redraw(self) -> None:
        run = self.run
        plot = self.getPlotItem()
        if plot is None:  # closed while a redraw was scheduled
            return
        self.empty.set_text(empty_text(run))
        self.empty.show(run is None or not len(run.tensors))
        if run is None:
            self._draw({})
            return
        vb = plot.getViewBox()
        if not self.isVisible() or vb.height() < 2:
            return
        (x0, x1), (y0, y1) = vb.viewRange()
        height = vb.height()
        with run.lock:
            log = run.tensors
            if not len(log):
                self._draw({})
                return
            keep = self.keep if self.keep is not None and len(self.keep) == len(log) else None
            if x1 - x0 <= 0 or not np.isfinite(x0):
                x0, x1 = -np.inf, np.inf
            window = analysis.window_rows(log, x0, x1, keep)
            if self.fit_height:
                top = analysis.top_of(log, window)
                if top > 0 and not np.isclose(top * 1.05, y1):
                    y0, y1 = 0.0, top * 1.05
                    vb.setYRange(y0, y1, padding=0)
            width = max(vb.width(), 1.0)
            seconds = (x1 - x0) / width if np.isfinite(x1 - x0) else 0.0
            rows = analysis.level_of_detail(log, window, (y1 - y0) / height, seconds,
                                            self._now(), x0 if np.isfinite(x0) else 0.0)
            self.shown_rows = rows
            cols = log.rows
            t_alloc = cols.column("t_alloc")[rows]
            t_free = np.nan_to_num(cols.column("t_free")[rows], nan=self._now())
            offset = cols.column("offset")[rows].astype(np.float64)
            nbytes = cols.column("nbytes")[rows].astype(np.float64)
            groups = self._groups(log, rows)
        bars = {}
        for key, (colour, label, sel) in groups.items():
            bars[key] = (colour, label, t_alloc[sel], t_free[sel], offset[sel], nbytes[sel])
        self._draw(bars)

    def _groups(self, log, rows) -> dict:
        if self.colour_by == "module":
            modules = log.rows.column("module")[rows].astype(np.int64)
            # shifted by one: -1 (no module known, an imported snapshot) is bin 0
            weights = np.bincount(modules + 1, weights=log.rows.column("nbytes")[rows]) \
                if len(modules) else np.zeros(0)
            top = [int(m) - 1 for m in np.argsort(-weights)[: len(MODULE_PALETTE) - 1]
                   if weights[m] > 0]
            out = {}
            for i, m in enumerate(top):
                out[f"m{m}"] = (MODULE_PALETTE[i], log.string("module", m) or "(no module)",
                                modules == m)
            rest = ~np.isin(modules, top)
            if rest.any():
                out["rest"] = (MODULE_PALETTE[-1], "other modules", rest)
            return out
        cats = log.rows.column("category")[rows]
        return {c: (COLOURS[c], LABELS[c], cats == i) for i, c in enumerate(CATEGORIES)
                if (cats == i).any()}

    def _draw(self, bars: dict) -> None:
        for key in list(self._items):
            if key not in bars:
                item = self._items.pop(key)
                self.legend.removeItem(item)
                self.removeItem(item)
        for key, (colour, label, x0, x1, y0, h) in bars.items():
            item = self._items.get(key)
            if item is None:
                item = pg.BarGraphItem(x0=x0, x1=x1, y0=y0, height=h, brush=pg.mkBrush(colour),
                                       pen=pg.mkPen(None))
                self.addItem(item)
                self._items[key] = item
                self.legend.addItem(item, label)
            else:
                item.setOpts(x0=x0, x1=x1, y0=y0, height=h)
                if self.legend.getLabel(item) is not None:
                    self.legend.getLabel(item).setText(label)

    def _clicked(self, event) -> None:
        row = self._row_at(event.scenePos())
        if row is not None:
            self.select(row)
            self.allocation_clicked.emit(row)

    def _row_at(self, scene_pos) -> int | None:
        run = self.run
        if run is None or not len(self.shown_rows):
            return None
        point = self.getPlotItem().getViewBox().mapSceneToView(scene_pos)
        with run.lock:
            return analysis.at_point(run.tensors, point.x(), point.y(), self._now(),
                                     self.shown_rows)

    def _hovered(self, scene_pos) -> None:
        row = self._row_at(scene_pos)
        self.setToolTip("" if row is None else hover_text(self.run, row))

    def select(self, row: int) -> None:
        run = self.run
        with run.lock:
            cols = run.tensors.rows
            t0 = cols.column("t_alloc")[row]
            t1 = analysis.free_times(run.tensors, self._now(), np.array([row]))[0]
            self.selection.setOpts(x0=[t0], x1=[t1], y0=[cols.column("offset")[row]],
                                   height=[cols.column("nbytes")[row]])

    def _user_zoomed(self, axes) -> None:
        if axes is None or axes[1]:  # the height was changed by hand: stop fitting it
            self.fit_height = False

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._lod_timer.start()  # hidden views have no pixels to decide detail by

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        timer = self.__dict__.get("_lod_timer")  # the base class resizes during __init__
        if timer is not None:
            timer.start()

    def bar_count(self) -> int:
        return int(sum(len(item.opts["x0"]) for item in self._items.values()))
