"""How memviz starts its own processes, in a leaf every layer may import: the worker's
command line, and the environment a recorded program's boot reads."""

from __future__ import annotations

import sys

# what `memviz record` hands the program it starts (read by memviz.program.boot)
RECORD_CONNECT_ENV = "MEMVIZ_RECORD_CONNECT"
RECORD_LEVEL_ENV = "MEMVIZ_RECORD_TRACK"
RECORD_HZ_ENV = "MEMVIZ_RECORD_HZ"
RECORD_DETAIL_ENV = "MEMVIZ_RECORD_DETAIL"


def worker_command() -> list[str]:
    """How to start a worker: the same executable, frozen bundle or Python."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "worker"]
    return [sys.executable, "-m", "memviz", "worker"]
