"""An axis that labels bytes in binary units (MiB, GiB), as memory tools should."""

from __future__ import annotations

import pyqtgraph as pg

UNITS = ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))


def format_bytes(value: float, spacing: float = 0.0) -> str:
    scale = max(abs(value), spacing)
    for size, unit in UNITS:
        if scale >= size:
            digits = 0 if spacing >= size or spacing == 0 else 1
            return f"{value / size:.{digits}f} {unit}"
    return f"{value:.0f} B"


class BytesAxis(pg.AxisItem):
    def tickStrings(self, values, scale, spacing):
        return [format_bytes(v * scale, spacing * scale) for v in values]
