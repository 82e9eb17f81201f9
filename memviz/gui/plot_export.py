"""Save any view as PNG or SVG, as it looks on screen.

SVG goes through Qt's own QSvgGenerator rendering the widget: pyqtgraph's
SVGExporter fails on the allocation view under Qt 6.11 (it cannot parse the
path data Qt writes), so memviz does not rely on it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, QRect, QSize
from PySide6.QtGui import QPainter
from PySide6.QtSvg import QSvgGenerator
from PySide6.QtWidgets import QGraphicsView, QWidget


def save_png(widget: QWidget, path: str | Path) -> None:
    if not widget.grab().save(str(path), "PNG"):
        raise OSError(f"could not write {path}")


def save_svg(widget: QWidget, path: str | Path, title: str = "memviz") -> None:
    generator = QSvgGenerator()
    generator.setFileName(str(path))
    generator.setSize(QSize(widget.width(), widget.height()))
    generator.setViewBox(QRect(0, 0, widget.width(), widget.height()))
    generator.setTitle(title)
    painter = QPainter(generator)
    try:
        if isinstance(widget, QGraphicsView):  # a plot's own view: its scene's render
            widget.render(painter)
        else:  # a composed widget (the timeline with its legend): every child
            widget.render(painter, QPoint(0, 0))
    finally:
        painter.end()


def save(widget: QWidget, path: str | Path, title: str = "memviz") -> None:
    """PNG or SVG by the file's suffix."""
    if str(path).lower().endswith(".svg"):
        save_svg(widget, path, title)
    else:
        save_png(widget, path)
