"""An axis that labels bytes in binary units (MiB, GiB) at power-of-two steps."""

from __future__ import annotations

import math

import pyqtgraph as pg

UNITS = ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))
PIXELS_PER_LABEL = 70


def format_bytes(value: float | None, spacing: float = 0.0) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    scale = max(abs(value), spacing)
    for size, unit in UNITS:
        if scale >= size:
            shown = value / size
            digits = 0 if shown == int(shown) or abs(shown) >= 100 else 1
            return f"{shown:.{digits}f} {unit}"
    return f"{value:.0f} B"


def byte_tick_spacing(span: float, pixels: float) -> float:
    """A power-of-two step giving about one label per PIXELS_PER_LABEL pixels."""
    wanted = span / max(pixels / PIXELS_PER_LABEL, 2.0)
    return float(2 ** math.ceil(math.log2(max(wanted, 1.0))))


class BytesAxis(pg.AxisItem):
    """Byte counts as 512 MiB, 3 GiB: the labels carry the unit, so pyqtgraph's own
    SI scaling (which would divide gigabytes down to "3 B (×1e9)") is off."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.enableAutoSIPrefix(False)

    def tickSpacing(self, minVal, maxVal, size):
        if not (math.isfinite(minVal) and math.isfinite(maxVal)) or maxVal <= minVal:
            return super().tickSpacing(minVal, maxVal, size)
        major = byte_tick_spacing(maxVal - minVal, size)
        if major < 4:  # no tick between whole bytes: it would read "1 B, 1 B, 0 B"
            return [(major, 0.0)]
        return [(major, 0.0), (major / 4, 0.0)]

    def tickStrings(self, values, scale, spacing):
        return [format_bytes(v * scale, spacing * scale) for v in values]


def settle(box: pg.ViewBox) -> None:
    """Apply a view box's pending automatic range and transform now, outside a paint
    (pyqtgraph defers both to the next paint, and a change there paints twice)."""
    if box._autoRangeNeedsUpdate:
        box.updateAutoRange()
    box.updateMatrix()
