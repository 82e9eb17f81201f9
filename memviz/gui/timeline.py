"""The live memory timeline: one curve per measured series, categories stacked,
phases shaded, a movable cursor, a legend beside it.

A tick costs what arrived since the last one, whatever the run's length: samples
are appended to min/max envelopes (``core.envelope``) and each curve is drawn from
the finest level that gives a few points per pixel of the visible range. Phases
and step marks too fine to see at the current zoom are left out of the frame (the
hint says to zoom in), never out of the data.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from ..core.categories import CATEGORIES, COLOURS, LABELS, SAMPLE_PREFIX
from ..core.envelope import Envelope, Growable
from ..core.run import Run
from .axes import BytesAxis, format_bytes
from .style import PHASES, RUN_STYLES, SERIES
from .timeline_legend import SeriesLegend, swatch

# Phases shade the whole height: their bars reach a few times above the highest
# value drawn, and autorange ignores them. (A fixed astronomically tall bar
# overflows Qt's rasteriser and draws nothing.)
SHADE_HEADROOM = 4.0
POINTS_PER_PIXEL = 2  # what an envelope returns at most per pixel of width
MARKS_PER_PIXEL = 1 / 4  # phases or step marks denser than this are left out of a frame
MIN_HEIGHT = 220
EMPTY_TEXT = "No run yet: press Run (Ctrl+R), or open a .memviz file (Ctrl+O)"

# Bottom to top: what lives longest first, so the areas read like a memory stack.
STACK_ORDER = ("parameter", "parameter_frozen", "buffer", "optimizer_state", "gradient",
               "quantization_state", "kv_cache", "input", "activation", "temporary", "other")
assert set(STACK_ORDER) == set(CATEGORIES)


# A simulated run's host series are the simulating process's, not the device's or the
# model's: drawn apart (their own legend entries, hidden at first), never read as the
# simulated bytes' memory. Its device series are the allocator model's.
HOST_SERIES = ("rss", "uss", "peak_rss", "system_used")
HOST_KEY = "host:"
DEVICE_SERIES = ("gpu_device_used", "gpu_process_used", "torch_allocated", "torch_reserved")


def _first_step(run: Run) -> float:
    """When ``run``'s first step began on its own clock (0 before it has one)."""
    with run.lock:
        if not run.steps:
            return 0.0
        first = run.steps[0]
        return float(first.t - (first.seconds or 0.0))


def series_key(column: str, simulated: bool) -> tuple[str, str]:
    """The legend key and label of ``column`` in a run (simulated or not)."""
    label = SERIES[column][0]
    if simulated and column in HOST_SERIES:
        return HOST_KEY + column, f"host {label} (the simulator's)"
    if simulated and column in DEVICE_SERIES:
        return "sim:" + column, label.replace(" (NVML)", "") + " (simulated)"
    return column, label


class _TimeBox(pg.ViewBox):
    """Drag across the plot to zoom in on that stretch of time (the time axis only);
    the wheel zooms time, a double click shows everything again."""

    def __init__(self) -> None:
        super().__init__()
        self.setMouseEnabled(x=True, y=False)
        self._band = pg.LinearRegionItem(brush=pg.mkBrush(70, 130, 180, 50), movable=False)
        self._band.setZValue(30)
        self._band.hide()
        self.addItem(self._band, ignoreBounds=True)

    def mouseDragEvent(self, event, axis=None) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            super().mouseDragEvent(event, axis)
            return
        event.accept()
        x0 = self.mapToView(event.buttonDownPos()).x()
        x1 = self.mapToView(event.pos()).x()
        self._band.setRegion(sorted((x0, x1)))
        self._band.show()
        if event.isFinish():
            self._band.hide()
            if abs(x1 - x0) > 0:
                self.setXRange(min(x0, x1), max(x0, x1), padding=0)

    def mouseDoubleClickEvent(self, event) -> None:
        self.enableAutoRange(x=True, y=True)
        event.accept()


class _RunLayers:
    """What one run contributes: its envelopes (data) and its plot items (drawing)."""

    def __init__(self, style, primary: bool, simulated: bool = False) -> None:
        self.style = style
        self.primary = primary
        self.simulated = simulated  # its device series are simulated, its host's are not
        self.offset = 0.0  # seconds taken off its times (an overlay aligned by step)
        self.envelopes: dict[str, Envelope] = {}  # sample columns shown as curves
        self.stacks: dict[str, Envelope] = {c: Envelope() for c in STACK_ORDER}
        self.stack_seen: set[str] = set()  # categories with bytes so far
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.areas: dict[str, pg.PlotDataItem] = {}
        self.shades: dict[str, pg.BarGraphItem] = {}
        self.steps: pg.BarGraphItem | None = None
        self.counted = 0  # samples appended so far
        self.phases_done = 0  # phases before this index are closed and stored
        self.spans: dict[str, tuple[Growable, Growable]] = {}  # name -> closed (begins, ends)
        self.open_spans: list[tuple[str, float, float]] = []  # from the first open phase
        self.step_ends = Growable()
        self.last_t = 0.0
        self.revision = -1


class TimelineView(QWidget):
    clicked_at = Signal(float)  # a click (not a drag) on the plot: the time there

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(MIN_HEIGHT)
        self.box = _TimeBox()
        self.plot = pg.PlotWidget(viewBox=self.box, axisItems={"left": BytesAxis("left")},
                                  background="w")
        self.plot_item = self.plot.getPlotItem()
        plot = self.plot_item
        # An opaque light grid: the axes' own alpha-blended grid costs ~40 ms a frame.
        grid = pg.GridItem(pen=pg.mkPen("#b0b0b0"), textPen=None)
        grid.setTickSpacing(x=[None, None], y=[None, None])  # two levels: ~10 lines, cheap
        grid.setZValue(-8)  # above the phase shading, below the curves
        plot.addItem(grid, ignoreBounds=True)
        plot.setLabel("bottom", "time since the run started", units="s")
        plot.setLabel("left", "memory")
        plot.getViewBox().setLimits(yMin=0)
        self.legend = SeriesLegend()
        self.legend.toggled.connect(self._toggled)
        self.readout = QLabel(" ")
        self._pointer_t: float | None = None  # the time under the pointer, last it moved
        self.align_by_step = False
        self._primary_first = 0.0  # the selected run's first step, last lined up with
        self.readout.setTextFormat(Qt.TextFormat.PlainText)
        # however many values it reads out, it never widens the window (it is cut)
        self.readout.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.readout.setToolTip("The values at the mouse pointer (the selected run). Drag "
                                "across the plot to zoom in on that time; double-click to "
                                "see everything")
        self.empty = pg.TextItem(EMPTY_TEXT, color="#555555", anchor=(0.5, 0.5))
        plot.addItem(self.empty, ignoreBounds=True)
        left = QVBoxLayout()
        left.setContentsMargins(0, 0, 0, 0)
        left.addWidget(self.readout)
        left.addWidget(self.plot, 1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(left, 1)
        layout.addWidget(self.legend)
        self._layers: dict[int, _RunLayers] = {}
        self._runs: dict[int, Run] = {}
        self._hidden: set[str] = {c for c, (_, _, shown) in SERIES.items() if not shown} | {
            HOST_KEY + c for c in HOST_SERIES}
        self._shade_height = 1.0
        self._loaded_band: pg.LinearRegionItem | None = None
        self._hint = ""
        self.cursor = pg.InfiniteLine(pos=0, angle=90, movable=True,
                                      pen=pg.mkPen("#d62728", width=1),
                                      label="t={value:.3f} s",
                                      labelOpts={"position": 0.95, "color": "#d62728"})
        self.cursor.setZValue(20)
        self.cursor.hide()
        plot.addItem(self.cursor, ignoreBounds=True)
        self._redraw_soon = QTimer(self)
        self._redraw_soon.setSingleShot(True)
        self._redraw_soon.setInterval(0)
        self._redraw_soon.timeout.connect(self._redraw_if_moved)
        self._drawn_span: tuple[float, float, int] | None = None
        plot.getViewBox().sigRangeChanged.connect(lambda *_: self._redraw_soon.start())
        self._mouse = pg.SignalProxy(plot.scene().sigMouseMoved, rateLimit=30,
                                     slot=self._mouse_moved)
        plot.scene().sigMouseClicked.connect(self._clicked)
        self.empty.setVisible(False)
        self._show_empty(True)

    def viewport(self):
        return self.plot.viewport()

    # -- which runs are shown ---------------------------------------------
    def show_runs(self, runs: list[Run]) -> None:
        wanted = [r.run_id for r in runs]
        if wanted != list(self._layers):  # other runs: the old readout is not theirs
            self.clear_readout()
        for run_id in list(self._layers):
            if run_id not in wanted:
                self._remove(run_id)
        for index, run in enumerate(runs):
            style = RUN_STYLES[index % len(RUN_STYLES)]
            layers = self._layers.get(run.run_id)
            if layers is None or layers.primary != (index == 0):
                if layers is not None:
                    self._remove(run.run_id)
                layers = self._layers[run.run_id] = _RunLayers(style, index == 0,
                                                               run.spec.simulate)
            layers.style = style
            for curve in layers.curves.values():
                curve.setPen(pg.mkPen(curve.opts["pen"].color(), width=1, style=style))
            self._runs[run.run_id] = run
        self.legend.set_runs([(f"run #{r.run_id}", RUN_STYLES[i % len(RUN_STYLES)])
                              for i, r in enumerate(runs)])
        for run in runs:
            self.update_run(run, force=True)
        self._show_empty(not runs)

    def show_loaded_span(self, span: tuple[float, float] | None) -> None:
        """Shade the span whose allocations are loaded (a long run opened from a file);
        None: every allocation is, nothing to shade."""
        band = self._loaded_band
        if span is None:
            if band is not None:
                band.hide()
            return
        if band is None:
            band = self._loaded_band = pg.LinearRegionItem(
                values=span, movable=False, brush=pg.mkBrush(90, 120, 220, 28),
                pen=pg.mkPen(90, 120, 220, 90))
            band.setZValue(-9)
            band.setToolTip("The allocations of this span are loaded: click outside it to "
                            "load the part around the click")
            self.plot_item.addItem(band, ignoreBounds=True)
        band.setRegion(span)
        band.show()

    def _remove(self, run_id: int) -> None:
        layers = self._layers.pop(run_id)
        self._runs.pop(run_id, None)
        for item in [*layers.curves.values(), *layers.areas.values(), *layers.shades.values(),
                     layers.steps]:
            if item is not None:
                self.plot_item.removeItem(item)

    def _show_empty(self, empty: bool) -> None:
        """With nothing to draw, say what to do instead of showing axes of 0 B."""
        if empty == self.empty.isVisible():
            return
        self.empty.setVisible(empty)
        for axis in ("left", "bottom"):
            self.plot_item.getAxis(axis).setStyle(showValues=not empty)
        vb = self.plot_item.getViewBox()
        if empty:
            vb.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
            self.empty.setPos(0.5, 0.5)
        else:
            vb.enableAutoRange(x=True, y=True)

    # -- taking in what arrived ---------------------------------------------------
    def set_align_by_step(self, aligned: bool) -> None:
        """Overlaid runs drawn from their first step on, lined up with the selected run's
        (not by the time each started, which includes loading its model)."""
        self.align_by_step = aligned
        for run in list(self._runs.values()):
            self.update_run(run, force=True)
        self.plot_item.setLabel("bottom", "time, runs lined up by their first step"
                                if aligned else "time since the run started", units="s")

    def _offset(self, run: Run) -> float:
        """How far ``run`` is moved to line its first step up with the selected run's."""
        primary = next((self._runs.get(i) for i, lay in self._layers.items() if lay.primary),
                       None)
        if not self.align_by_step or primary is None or primary is run:
            return 0.0
        return _first_step(run) - _first_step(primary)

    def update_run(self, run: Run, force: bool = False) -> bool:
        """Take in what ``run`` gained since the last call, and redraw; True if it did."""
        layers = self._layers.get(run.run_id)
        if layers is None or (layers.revision == run.revision and not force):
            return False
        offset = self._offset(run)
        if offset != layers.offset:  # every time of it moves: taken in again from the start
            self._remove(run.run_id)
            fresh = self._layers[run.run_id] = _RunLayers(layers.style, layers.primary,
                                                          layers.simulated)
            fresh.offset, layers = offset, fresh
            self._runs[run.run_id] = run
        with run.lock:  # views stay valid after the lock: appends never write inside them
            layers.revision = run.revision
            samples = run.samples
            start, end = layers.counted, len(samples)
            t = samples.column("t")[start:end] - layers.offset
            new = {c: samples.column(c)[start:end] for c in SERIES if samples.has_data(c)}
            cats = {c: samples.column(SAMPLE_PREFIX + c)[start:end] for c in STACK_ORDER} \
                if layers.primary else {}
            phases = [(p.name, p.begin - layers.offset, p.end - layers.offset)
                      for p in run.phases[layers.phases_done:]]
            step_ends = [s.t - layers.offset for s in run.steps[layers.step_ends.size:]]
        layers.counted = end
        if len(t):
            layers.last_t = float(t[-1])
            self._show_empty(False)
        for column, values in new.items():
            envelope = layers.envelopes.setdefault(column, Envelope())
            if len(envelope) < start:  # a series that began late: missing before
                envelope.append(np.full(0, 0.0), np.full(0, 0.0))
            envelope.append(t, values)
            top = float(np.nanmax(values)) if len(values) and np.isfinite(values).any() else 0
            if top * SHADE_HEADROOM > self._shade_height:
                self._shade_height = top * SHADE_HEADROOM * 2
        if cats and len(t):
            running = np.zeros(len(t))
            for name in STACK_ORDER:
                values = np.nan_to_num(cats[name])
                if values.any():
                    layers.stack_seen.add(name)
                running = running + values
                layers.stacks[name].append(t, running)
        self._take_phases(layers, phases)
        layers.step_ends.extend(np.asarray(step_ends, dtype=np.float64))
        if self.align_by_step and layers.primary:
            first = _first_step(run)
            if first != self._primary_first:  # the overlays line up with it anew
                self._primary_first = first
                for other in list(self._runs.values()):
                    if other is not run:
                        self.update_run(other, force=True)
        self.redraw()
        return True

    @staticmethod
    def _take_phases(layers: _RunLayers, phases: list) -> None:
        """Phases closed in order are stored for good; from the first still open one on,
        they are kept aside and looked at again next time."""
        closed = 0
        for name, begin, end in phases:
            if math.isnan(end):
                break
            begins, ends = layers.spans.setdefault(name, (Growable(), Growable()))
            begins.extend(np.array([begin]))
            ends.extend(np.array([end]))
            closed += 1
        layers.phases_done += closed
        layers.open_spans = [(name, begin, end) for name, begin, end in phases[closed:]]

    # -- drawing --------------------------------------------------------------------
    def _visible(self) -> tuple[float, float, int]:
        vb = self.plot_item.getViewBox()
        width = max(int(vb.width()), 100)
        if vb.state["autoRange"][0]:  # following: everything there is
            end = max((layers.last_t for layers in self._layers.values()), default=1.0)
            return 0.0, end, width
        (x0, x1), _ = vb.viewRange()
        return x0, x1, width

    def _redraw_if_moved(self) -> None:
        """After the view's range changed: a view following the run has already drawn
        what it shows now (update_run drew to the newest sample), so only a range the
        user moved to, or a resize, draws again."""
        if self._visible() != self._drawn_span:
            self.redraw()

    def redraw(self) -> None:
        x0, x1, width = self._drawn_span = self._visible()
        points = POINTS_PER_PIXEL * width
        marks = max(int(width * MARKS_PER_PIXEL), 1)
        self._hint = ""
        for layers in self._layers.values():
            for column, envelope in layers.envelopes.items():
                x, y = envelope.query(x0, x1, points)
                self._curve(layers, column).setData(x, y, connect="finite")
            if layers.primary:
                for name in STACK_ORDER:
                    if name in layers.stack_seen:
                        x, y = layers.stacks[name].query(x0, x1, points, upper_only=True)
                        self._area(layers, name).setData(x, y, connect="all",
                                                          skipFiniteCheck=True)
                self._draw_phases(layers, x0, x1, marks)
                self._draw_steps(layers, x0, x1, marks)
        # the values under the pointer, read again from what is drawn now
        self.readout.setText(self._hint or (self.describe_moment(self._pointer_t)
                                            if self._pointer_t is not None else " "))

    def clear_readout(self) -> None:
        """Nothing under the pointer (another run, or a picture being saved)."""
        self._pointer_t = None
        self.readout.setText(" ")

    def _curve(self, layers: _RunLayers, column: str) -> pg.PlotDataItem:
        key, label = series_key(column, layers.simulated)
        curve = layers.curves.get(key)
        if curve is None:
            colour = SERIES[column][1]
            curve = self.plot_item.plot(pen=pg.mkPen(colour, width=1, style=layers.style))
            curve.setVisible(key not in self._hidden)
            if column == "peak_rss":  # nearly equal to RSS: keep it under the RSS line
                curve.setZValue(-1)
            layers.curves[key] = curve
            self.legend.ensure(key, label, swatch(colour), key not in self._hidden,
                               order=list(SERIES).index(column) + (0.5 if key != column else 0))
        return curve

    def _area(self, layers: _RunLayers, name: str) -> pg.PlotDataItem:
        """Stacked areas: each category filled from 0 to its running total, drawn from
        the top down, so each visible band is exactly that category's bytes."""
        area = layers.areas.get(name)
        if area is None:
            colour = QColor(COLOURS[name])
            area = pg.PlotDataItem(pen=pg.mkPen(colour.darker(120), width=1), fillLevel=0,
                                   brush=pg.mkBrush(colour))
            area.setZValue(-9 + (len(STACK_ORDER) - STACK_ORDER.index(name)) * 0.01)
            area.setVisible(f"cat:{name}" not in self._hidden)
            self.plot_item.addItem(area)
            layers.areas[name] = area
            self.legend.ensure(f"cat:{name}", LABELS[name], swatch(COLOURS[name], filled=True),
                               f"cat:{name}" not in self._hidden,  # the stack's top first
                               order=100 + len(STACK_ORDER) - STACK_ORDER.index(name))
        return area

    def _draw_phases(self, layers: _RunLayers, x0: float, x1: float, marks: int) -> None:
        names = set(layers.spans) | {name for name, _, _ in layers.open_spans}
        for name in names:
            stored = layers.spans.get(name)
            begins, ends = (stored[0].view(), stored[1].view()) if stored else \
                (np.empty(0), np.empty(0))
            pending = [(b, layers.last_t if math.isnan(e) else e)
                       for n, b, e in layers.open_spans if n == name]
            if pending:
                begins = np.append(begins, [b for b, _ in pending])
                ends = np.append(ends, [e for _, e in pending])
            first = int(np.searchsorted(ends, x0))
            last = int(np.searchsorted(begins, x1, side="right"))
            item = self._shade(layers, name)
            if last - first > marks:
                item.setVisible(False)
                self._hint = "zoom in (drag across the plot) to see each step's phases"
                continue
            item.setVisible(f"phase:{name}" not in self._hidden)
            item.setOpts(x0=begins[first:last], x1=ends[first:last], y0=0,
                         height=self._shade_height)

    def _shade(self, layers: _RunLayers, name: str) -> pg.BarGraphItem:
        item = layers.shades.get(name)
        if item is None:
            colour = QColor(PHASES.get(name, "#cccccc"))
            colour.setAlpha(45)
            item = pg.BarGraphItem(x0=[], x1=[], y0=0, height=self._shade_height,
                                   brush=colour, pen=pg.mkPen(None))
            item.setZValue(-10)
            self.plot_item.addItem(item, ignoreBounds=True)
            layers.shades[name] = item
            label = "temporaries not tracked (step)" if name == "untracked" \
                else f"{name} (phase)"
            if name == "untracked":  # drawn as a light hatch across the step
                hatch = QColor(colour)
                hatch.setAlpha(110)
                item.setOpts(brush=QBrush(hatch, Qt.BrushStyle.BDiagPattern))
            self.legend.ensure(f"phase:{name}", label,
                               swatch(PHASES.get(name, "#cccccc"), filled=True, alpha=90),
                               order=200 + list(PHASES).index(name) if name in PHASES else 299)
        return item

    def _draw_steps(self, layers: _RunLayers, x0: float, x1: float, marks: int) -> None:
        ends = layers.step_ends.view()
        if not len(ends):
            return
        first, last = int(np.searchsorted(ends, x0)), int(np.searchsorted(ends, x1, "right"))
        if layers.steps is None:
            layers.steps = pg.BarGraphItem(x=[], width=0, y0=0, height=self._shade_height,
                                           pen=pg.mkPen("#555555", width=1,
                                                        style=Qt.PenStyle.DotLine))
            layers.steps.setZValue(-5)
            self.plot_item.addItem(layers.steps, ignoreBounds=True)
        dense = last - first > marks
        layers.steps.setVisible(not dense)
        if not dense:
            layers.steps.setOpts(x=ends[first:last], width=0, height=self._shade_height)

    # -- the legend and the pointer ------------------------------------------------------
    def _toggled(self, key: str, shown: bool) -> None:
        (self._hidden.discard if shown else self._hidden.add)(key)
        for layers in self._layers.values():
            if key in layers.curves:
                layers.curves[key].setVisible(shown)
            if key.startswith("cat:") and key[4:] in layers.areas:
                layers.areas[key[4:]].setVisible(shown)
            if key.startswith("phase:") and key[6:] in layers.shades:
                layers.shades[key[6:]].setVisible(shown)

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or event.double() or \
                self.empty.isVisible():
            return
        pos = event.scenePos()
        if self.plot_item.getViewBox().sceneBoundingRect().contains(pos):
            self.clicked_at.emit(float(self.plot_item.getViewBox().mapSceneToView(pos).x()))

    def _mouse_moved(self, event) -> None:
        pos = event[0]
        vb = self.plot_item.getViewBox()
        if not self.plot_item.sceneBoundingRect().contains(pos):
            return
        self._pointer_t = t = vb.mapSceneToView(pos).x()
        self.readout.setText(self.describe_moment(t))

    def describe_moment(self, t: float) -> str:
        """The selected run's values at time ``t``, as the readout shows them."""
        primary = next((lay for lay in self._layers.values() if lay.primary), None)
        if primary is None or not primary.envelopes:
            return " "
        parts = [f"t = {t:.3f} s"]
        for column, envelope in primary.envelopes.items():
            key, label = series_key(column, primary.simulated)
            if key in self._hidden:
                continue
            times, _, values = (g.view() for g in envelope.levels[0])
            i = int(np.searchsorted(times, t, side="right")) - 1
            if 0 <= i < len(values) and np.isfinite(values[i]):
                parts.append(f"{label} {format_bytes(values[i])}")
        tracked = primary.stacks[STACK_ORDER[-1]]
        times, _, values = (g.view() for g in tracked.levels[0])
        i = int(np.searchsorted(times, t, side="right")) - 1
        if primary.stack_seen and 0 <= i < len(values):
            parts.append(f"tracked {format_bytes(values[i])}")
        return " · ".join(parts)
