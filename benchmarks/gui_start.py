"""GUI cold start to a shown window, and the idle window's RSS, in a fresh process."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from .common import Result

CHILD = r"""
import os, sys, time
started = float(os.environ["MEMVIZ_BENCH_T0"])
from PySide6.QtCore import QTimer
from memviz.gui.app import make_app
from memviz.gui.main_window import MainWindow
app = make_app()
w = MainWindow()
w.show()
def shown():
    print(f"shown {time.time() - started:.4f}", flush=True)
    QTimer.singleShot(2000, idle)
def idle():
    import psutil
    print(f"rss {psutil.Process().memory_info().rss}", flush=True)
    app.quit()
QTimer.singleShot(0, shown)
app.exec()
"""


def measure(repeats: int = 5) -> list[Result]:
    starts, rss = [], []
    for _ in range(repeats):
        env = {**os.environ, "MEMVIZ_BENCH_T0": repr(time.time()),
               "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
        out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                             text=True, timeout=120, check=True).stdout.split()
        starts.append(float(out[out.index("shown") + 1]))
        rss.append(int(out[out.index("rss") + 1]) / 1e6)
    start = statistics.median(starts)
    idle = statistics.median(rss)
    return [
        Result("GUI cold start to shown window", start * 1000, "ms", "≤ 1500 ms", start <= 1.5,
               f"median of {repeats} fresh processes"),
        Result("idle GUI RSS", idle, "MB", "≤ 250 MB", idle <= 250, "after 2 s idle"),
    ]
