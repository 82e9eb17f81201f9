"""The shape of what a run streams: its sample columns and its string tables, and the
error a malformed stream raises. Defined here, below the protocol, because the Run
that applies the stream holds these columns; ``protocol.messages`` validates
against them."""

from __future__ import annotations

from .categories import CATEGORIES, SAMPLE_PREFIX


class ProtocolError(ValueError):
    """A message that breaks the protocol (unknown type, missing field, wrong kind)."""


SAMPLE_COLUMNS = (
    "t",
    "rss",
    "uss",
    "peak_rss",
    "system_used",
    "gpu_device_used",
    "gpu_process_used",
    "torch_allocated",
    "torch_reserved",
    "tracked_total",
    *(SAMPLE_PREFIX + c for c in CATEGORIES),
)
STRING_TABLES = ("dtype", "shape", "device", "module", "op", "frame")
