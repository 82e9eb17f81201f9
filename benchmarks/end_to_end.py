"""memviz's commands end to end against the same work done plainly (``python -m
benchmarks.end_to_end``): wall time from the command to its exit, the two interleaved
round by round (order alternating), the figure the median of the rounds' ratios.

- ``memviz run --model gpt2-tiny --data random --steps 20 -o FILE`` against
  ``benchmarks/plain_loop.py`` (the same model, batch, optimizer and steps, written
  without memviz). Budget: ×1.05.
- ``memviz record`` of ``examples/train_loop.py --steps 20`` against the plain script.
  Its steps are small (2 × 128, a 2-layer model of width 128: ~36 ms a step), so the
  tracker's fixed cost a step weighs far more than on a model of any size.

Both sides pay Python's start and torch's import; memviz also starts its side (its
own Python, the socket, the file), the worker or the program's tracker, and counts
what it reports after the steps (the model's size on disk).
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
STEPS = "20"


def _wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   cwd=ROOT)
    return time.perf_counter() - started


def _interleaved(commands: dict[str, list[str]], rounds: int) -> tuple[float, float, float]:
    """(plain's median, memviz's median, the median of the rounds' ratios)."""
    plain, tracked, ratios = [], [], []
    _wall(commands["plain"])  # the page cache warm for both
    for round_no in range(rounds):
        order = ("plain", "memviz") if round_no % 2 == 0 else ("memviz", "plain")
        times = {name: _wall(commands[name]) for name in order}
        plain.append(times["plain"])
        tracked.append(times["memviz"])
        ratios.append(times["memviz"] / times["plain"])
    return statistics.median(plain), statistics.median(tracked), statistics.median(ratios)


def measure(rounds: int = 5, only: str = "") -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "run.memviz")
        pairs = {
            "memviz run, gpt2-tiny 4 × 256, 20 steps": {
                "plain": [sys.executable, "-m", "benchmarks.plain_loop", STEPS],
                "memviz": [sys.executable, "-m", "memviz", "run", "--model", "gpt2-tiny",
                           "--data", "random", "--steps", STEPS, "--force", "-o", out]},
            "memviz record, train_loop.py, 20 steps": {
                "plain": [sys.executable, *SCRIPT],
                "memviz": [sys.executable, "-m", "memviz", "record", "--force", "-o", out,
                           "--", "python", *SCRIPT]},
        }
        for name, commands in pairs.items():
            if only not in name:
                continue
            plain, tracked, ratio = _interleaved(commands, rounds)
            results += [
                Result(f"{name}: plain", plain, "s", "", True, f"median of {rounds}"),
                Result(f"{name}: under memviz", tracked, "s", "", True, f"median of {rounds}"),
                Result(f"{name}: memviz over plain", (ratio - 1) * 100, "%",
                       f"≤ {BUDGET - 1:.0%}", ratio <= BUDGET, "median of the rounds' ratios")]
    return results


if __name__ == "__main__":
    print_table(measure(only=sys.argv[1] if len(sys.argv) > 1 else ""))
