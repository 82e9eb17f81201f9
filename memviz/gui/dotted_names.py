"""Module names shortened by whole dotted segments from the front, so the tail that tells
one module from another stays: ``…h.3.mlp.act``, never ``transf…lp.act`` three times.

A table hands its names to ``DottedNameDelegate.set_names``; each name then keeps at
least the trailing segments that no other name shares (``distinguishing_tails``), and
as many more as its column has room for. The full name stays in the item's tooltip.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QStyle, QStyledItemDelegate

ELLIPSIS = "…"


def distinguishing_tails(names: Iterable[str]) -> dict[str, int]:
    """For each name, the fewest trailing segments that no other name ends with."""
    parts = {name: tuple(name.split(".")) for name in set(names)}
    deepest = max((len(p) for p in parts.values()), default=0)
    keep: dict[str, int] = {}
    for k in range(1, deepest + 1):
        counts = Counter(p[-k:] for name, p in parts.items() if name not in keep)
        for name, p in parts.items():
            if name not in keep and (counts[p[-k:]] == 1 or k >= len(p)):
                keep[name] = k
    return keep


def shortened(name: str, fits: Callable[[str], bool], keep: int = 1) -> str | None:
    """``name`` whole if it fits, else "…" and the longest tail of whole segments that
    fits and keeps ``keep`` segments; None when even those do not fit."""
    if fits(name):
        return name
    parts = name.split(".")
    for k in range(len(parts) - 1, max(keep, 1) - 1, -1):
        text = ELLIPSIS + ".".join(parts[-k:])
        if fits(text):
            return text
    return None


class DottedNameDelegate(QStyledItemDelegate):
    """Draws a column of dotted names shortened by ``shortened``."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._keep: dict[str, int] = {}

    def set_names(self, names: Iterable[str]) -> None:
        self._keep = distinguishing_tails(names)

    def shown_text(self, name: str, width: int, metrics) -> str:
        """What a cell ``width`` pixels wide shows of ``name``."""
        keep = self._keep.get(name, 1)
        found = shortened(name, lambda text: metrics.horizontalAdvance(text) <= width, keep)
        if found is not None:
            return found
        tail = ".".join(name.split(".")[-keep:])  # the telling tail, cut in its middle
        return metrics.elidedText(ELLIPSIS + tail, Qt.TextElideMode.ElideMiddle, width)

    def initStyleOption(self, option, index) -> None:
        super().initStyleOption(option, index)
        style = option.widget.style() if option.widget is not None else None
        margin = (style.pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin) + 1
                  if style is not None else 3)
        width = option.rect.width() - 2 * margin
        if option.features & option.ViewItemFeature.HasDecoration:
            width -= option.decorationSize.width() + margin
        option.text = self.shown_text(option.text, max(width, 0), option.fontMetrics)
        option.textElideMode = Qt.TextElideMode.ElideNone
