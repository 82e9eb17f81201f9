"""Colours and pens shared by the views, so a series looks the same everywhere."""

from __future__ import annotations

from PySide6.QtCore import Qt

SERIES = {
    # column: (label, colour, shown by default)
    "rss": ("RSS", "#1f77b4", True),
    "uss": ("USS", "#2ca02c", True),
    "peak_rss": ("peak RSS (kernel, between samples)", "#9ecae1", True),
    "system_used": ("system memory in use", "#7f7f7f", False),
    "gpu_device_used": ("GPU device used (NVML)", "#d62728", True),
    "gpu_process_used": ("GPU this process (NVML)", "#ff7f0e", True),
    "torch_allocated": ("torch allocated", "#9467bd", True),
    "torch_reserved": ("torch reserved", "#8c564b", True),
}

PHASES = {
    "load": "#bdbdbd",
    "forward": "#6baed6",
    "backward": "#fd8d3c",
    "optimizer": "#74c476",
    "generate": "#9e9ac8",
    "untracked": "#525252",  # a step without the per-op tracker: temporaries unseen
}

# Runs overlaid on one timeline are told apart by line style.
RUN_STYLES = [Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine,
              Qt.PenStyle.DashDotLine]

ERROR_STYLE = ("QLabel { background: #fdecea; color: #611a15; border: 1px solid #f5c6cb;"
               " padding: 6px; }")
