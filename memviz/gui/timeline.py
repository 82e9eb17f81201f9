"""The live memory timeline: one curve per measured series, phases shaded.

Curves are fed zero-copy views of the Run's growable columns and redrawn by
the window's timer, never per message. Peak downsampling and clip-to-view keep
a million points at a few ms per frame.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor

from ..core.categories import CATEGORIES, COLOURS, LABELS, SAMPLE_PREFIX
from ..core.run import Run
from .axes import BytesAxis
from .style import PHASES, RUN_STYLES, SERIES

# Phases shade the whole height: their bars reach a few times above the highest
# value drawn, and autorange ignores them. (A fixed astronomically tall bar
# overflows Qt's rasteriser and draws nothing.)
SHADE_HEADROOM = 4.0


# Bottom to top: what lives longest first, so the areas read like a memory stack.
STACK_ORDER = ("parameter", "parameter_frozen", "buffer", "optimizer_state", "gradient",
               "quantization_state", "kv_cache", "input", "activation", "temporary", "other")
assert set(STACK_ORDER) == set(CATEGORIES)


class _RunLayers:
    """The items one run contributes to the plot."""

    def __init__(self) -> None:
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.areas: dict[str, pg.PlotDataItem] = {}
        self.shades: dict[str, pg.BarGraphItem] = {}
        self.steps: pg.BarGraphItem | None = None
        self.revision = -1


class TimelineView(pg.GraphicsLayoutWidget):
    """A legend row above the plot, so the legend never hides the data.

    A movable red cursor picks the moment the "At a moment" view lists."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent=parent)
        self.setBackground("w")
        self.legend = pg.LegendItem(colCount=4, labelTextSize="8pt")
        self.addItem(self.legend, row=0, col=0)
        self.plot_item = self.addPlot(row=1, col=0, axisItems={"left": BytesAxis("left")})
        self.ci.layout.setRowStretchFactor(1, 10)
        plot = self.plot_item
        # An opaque light grid: the axes' own alpha-blended grid costs ~40 ms a frame.
        grid = pg.GridItem(pen=pg.mkPen("#b0b0b0"), textPen=None)
        grid.setTickSpacing(x=[None, None], y=[None, None])  # two levels: ~10 lines, cheap
        grid.setZValue(-8)  # above the phase shading, below the curves
        plot.addItem(grid, ignoreBounds=True)
        plot.setLabel("bottom", "time since the worker started", units="s")
        plot.setLabel("left", "memory")
        plot.setDownsampling(auto=True, mode="peak")
        plot.setClipToView(True)
        plot.getViewBox().setLimits(yMin=0)
        self._layers: dict[int, _RunLayers] = {}
        self._hidden: set[str] = {c for c, (_, _, shown) in SERIES.items() if not shown}
        self._phase_legend_added: set[str] = set()
        self._shade_height = 1.0
        self.cursor = pg.InfiniteLine(pos=0, angle=90, movable=True,
                                      pen=pg.mkPen("#d62728", width=1),
                                      label="t={value:.3f} s",
                                      labelOpts={"position": 0.95, "color": "#d62728"})
        self.cursor.setZValue(20)
        self.cursor.hide()
        plot.addItem(self.cursor, ignoreBounds=True)

    # -- which runs are shown ---------------------------------------------
    def show_runs(self, runs: list[Run]) -> None:
        wanted = {r.run_id for r in runs}
        for run_id in list(self._layers):
            if run_id not in wanted:
                self._remove(run_id)
        for index, run in enumerate(runs):
            if run.run_id not in self._layers:
                self._layers[run.run_id] = _RunLayers()
            self._layers[run.run_id].style = RUN_STYLES[index % len(RUN_STYLES)]
            self._layers[run.run_id].shade = index == 0
        for run in runs:
            self.update_run(run, force=True)

    def _remove(self, run_id: int) -> None:
        layers = self._layers.pop(run_id)
        for item in [*layers.curves.values(), *layers.areas.values(), *layers.shades.values(),
                     layers.steps]:
            if item is not None:
                self.legend.removeItem(item)
                self.plot_item.removeItem(item)

    # -- drawing --------------------------------------------------------------
    def update_run(self, run: Run, force: bool = False) -> bool:
        """Redraw ``run`` if it changed since the last call; True if it did."""
        layers = self._layers.get(run.run_id)
        if layers is None or (layers.revision == run.revision and not force):
            return False
        with run.lock:  # views stay valid after the lock: appends never write inside them
            layers.revision = run.revision
            samples = run.samples
            t = samples.column("t")
            columns = {c: (samples.column(c), samples.has_gaps(c)) for c in SERIES
                       if samples.has_data(c)}
            categories = {c: samples.column(SAMPLE_PREFIX + c) for c in STACK_ORDER
                          if samples.has_data(SAMPLE_PREFIX + c)}
            phases = [(p.name, p.begin, p.end) for p in run.phases]
            step_ends = np.array([s.t for s in run.steps])
        for column, (values, gaps) in columns.items():
            curve = self._curve(run, layers, column)
            if gaps:
                curve.setData(t, values, connect="finite")
            else:
                curve.setData(t, values, connect="all", skipFiniteCheck=True)
            top = float(np.nanmax(values[-4096:])) if len(values) else 0.0
            if np.isfinite(top) and top * SHADE_HEADROOM > self._shade_height:
                self._shade_height = top * SHADE_HEADROOM * 2
        if layers.shade:
            self._draw_categories(layers, t, categories)
            self._draw_phases(layers, phases, t[-1] if len(t) else 0.0)
            self._draw_steps(layers, step_ends)
        return True

    def _curve(self, run: Run, layers: _RunLayers, column: str) -> pg.PlotDataItem:
        curve = layers.curves.get(column)
        if curve is None:
            label, colour, _ = SERIES[column]
            name = label if len(self._layers) == 1 else f"{label} · run {run.run_id}"
            curve = self.plot_item.plot(pen=pg.mkPen(colour, width=1, style=layers.style))
            self.legend.addItem(curve, name)
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
            curve.setVisible(column not in self._hidden)
            if column == "peak_rss":  # nearly equal to RSS: keep it under the RSS line
                curve.setZValue(-1)
            layers.curves[column] = curve
        return curve

    def _draw_categories(self, layers: _RunLayers, t: np.ndarray, categories: dict) -> None:
        """Stacked areas: each category filled from 0 to its running total, drawn from
        the top down, so each visible band is exactly that category's bytes."""
        running = np.zeros(len(t))
        for z, (name, values) in enumerate(categories.items()):
            if not np.nanmax(values, initial=0):
                continue
            running = running + np.nan_to_num(values)
            area = layers.areas.get(name)
            if area is None:
                colour = QColor(COLOURS[name])
                area = pg.PlotDataItem(pen=pg.mkPen(colour.darker(120), width=1), fillLevel=0,
                                       brush=pg.mkBrush(colour))
                area.setDownsampling(auto=True, method="peak")
                area.setClipToView(True)
                area.setZValue(-9 + (len(STACK_ORDER) - z) * 0.01)
                self.plot_item.addItem(area)
                self.legend.addItem(area, LABELS[name])
                layers.areas[name] = area
            area.setData(t, running.copy(), connect="all", skipFiniteCheck=True)

    def _draw_phases(self, layers: _RunLayers, phases: list, now: float) -> None:
        by_name: dict[str, list[tuple[float, float]]] = {}
        for name, begin, end in phases:
            by_name.setdefault(name, []).append((begin, now if np.isnan(end) else end))
        for name, spans in by_name.items():
            x0 = np.array([s[0] for s in spans])
            x1 = np.array([s[1] for s in spans])
            item = layers.shades.get(name)
            if item is None:
                colour = QColor(PHASES.get(name, "#cccccc"))
                colour.setAlpha(45)
                item = pg.BarGraphItem(x0=x0, x1=x1, y0=0, height=self._shade_height,
                                       brush=colour, pen=pg.mkPen(None))
                item.setZValue(-10)
                self.plot_item.addItem(item, ignoreBounds=True)
                layers.shades[name] = item
                if name not in self._phase_legend_added:
                    self._phase_legend_added.add(name)
                    self.legend.addItem(item, name)
            else:
                item.setOpts(x0=x0, x1=x1, y0=0, height=self._shade_height)

    def _draw_steps(self, layers: _RunLayers, step_ends: np.ndarray) -> None:
        if not len(step_ends):
            return
        if layers.steps is None:
            layers.steps = pg.BarGraphItem(x=step_ends, width=0, y0=0, height=self._shade_height,
                                           pen=pg.mkPen("#555555", width=1,
                                                        style=pg.QtCore.Qt.PenStyle.DotLine))
            layers.steps.setZValue(-5)
            self.plot_item.addItem(layers.steps, ignoreBounds=True)
        else:
            layers.steps.setOpts(x=step_ends, width=0, height=self._shade_height)
