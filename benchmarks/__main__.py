"""Print the benchmark table: ``python -m benchmarks``."""

from __future__ import annotations

import os
import platform

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from . import alloc_view, compiled, gui_start, program, snapshot, stream, timeline, tracking
from .common import print_table


def main() -> None:
    results = [*gui_start.measure(), *stream.measure(), *timeline.measure(),
               *alloc_view.measure(), *snapshot.measure(), *tracking.measure_keeping_freed(),
               *program.measure(), *compiled.measure()]
    print(f"memviz benchmarks on {platform.node()} ({os.cpu_count()} cores, "
          f"Python {platform.python_version()}, Qt platform {os.environ['QT_QPA_PLATFORM']})")
    print_table(results)


if __name__ == "__main__":
    main()
