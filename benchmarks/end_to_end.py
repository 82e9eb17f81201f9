"""A user's script end to end, plain and under ``memviz record`` (``python -m
benchmarks.end_to_end``): wall time from the command to its exit, 20 optimizer steps of
``examples/train_loop.py``, the two interleaved round by round (order alternating),
and the figure the median of the rounds' ratios. Budget: ×1.05.

Both pay Python's start and torch's import; ``record`` also starts memviz's side (its
own Python, the socket, the file) and the program's tracker. The steps are the
script's own size (2 × 128, accumulation 2), so start-up weighs as much as the steps.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import Result, print_table

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = [str(ROOT / "examples" / "train_loop.py"), "--steps", "20"]
BUDGET = 1.05


def _wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(rounds: int = 5) -> list[Result]:
    plain, recorded, ratios = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "run.memviz")
        commands = {
            "plain": [sys.executable, *SCRIPT],
            "record": [sys.executable, "-m", "memviz", "record", "--force", "-o", out, "--",
                       "python", *SCRIPT],
        }
        _wall(commands["plain"])  # the page cache warm for both
        for round_no in range(rounds):
            order = ("plain", "record") if round_no % 2 == 0 else ("record", "plain")
            times = {name: _wall(commands[name]) for name in order}
            plain.append(times["plain"])
            recorded.append(times["record"])
            ratios.append(times["record"] / times["plain"])
    ratio = statistics.median(ratios)
    return [Result("train_loop.py, 20 steps, plain", statistics.median(plain), "s", "", True,
                   f"median of {rounds}"),
            Result("memviz record of it", statistics.median(recorded), "s", "", True,
                   f"median of {rounds}"),
            Result("memviz record over plain", (ratio - 1) * 100, "%",
                   f"≤ {BUDGET - 1:.0%}", ratio <= BUDGET, "median of the rounds' ratios")]


if __name__ == "__main__":
    print_table(measure())
