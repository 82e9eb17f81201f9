"""What a chart says when it has nothing to draw: what to do, not axes of "0 B"."""

from __future__ import annotations

import pyqtgraph as pg


class EmptyState:
    """A centred note on ``plot`` while it is empty; its axes' numbers are hidden then."""

    def __init__(self, plot: pg.PlotWidget | pg.PlotItem, text: str,
                 autorange: bool = True) -> None:
        """``autorange``: give the view back its autorange once there is data (a view
        that fits its own range says False)."""
        self.item = plot.getPlotItem() if isinstance(plot, pg.PlotWidget) else plot
        self.autorange = autorange
        self.note = pg.TextItem(text, color="#555555", anchor=(0.5, 0.5))
        self.note.setZValue(50)
        self.empty: bool | None = None
        self.show(True)

    def set_text(self, text: str) -> None:
        if self.note.textItem.toPlainText() != text:
            self.note.setText(text)

    def show(self, empty: bool) -> None:
        if empty == self.empty and (not empty or self.note.scene() is not None):
            return
        self.empty = empty
        if empty:
            self.item.addItem(self.note, ignoreBounds=True)
            self.item.getViewBox().setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
            self.note.setPos(0.5, 0.5)
        else:
            self.item.removeItem(self.note)
            if self.autorange:
                self.item.getViewBox().enableAutoRange()
        for axis in ("left", "bottom"):
            self.item.getAxis(axis).setStyle(showValues=not empty)
