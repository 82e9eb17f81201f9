"""The installers' budgets: ``python -m benchmarks.bundle`` after ``make package``.

Bundle size unpacked and compressed (the tarball and the .deb), and the frozen
app's start: from exec to the first event-loop turn after the window is shown
(median of 3, offscreen; the app reports it in its smoke test).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

from .common import Result, print_table

DIST = Path(__file__).resolve().parent.parent / "dist"


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def start_seconds(app: Path) -> float:
    """Start the app's smoke test and stop it once it says the window is shown."""
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
           "QT_QPA_PLATFORM": "offscreen", "MEMVIZ_RUNS_DIR": "/tmp/memviz-bench-runs"}
    proc = subprocess.Popen([str(app), "--smoke-test", "/tmp/memviz-bench-smoke.png"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            found = re.search(r"window shown ([0-9.]+) s", line)
            if found:
                return float(found.group(1))
        raise RuntimeError("the app never said its window was shown")
    finally:
        proc.kill()
        proc.wait()


def measure() -> list[Result]:
    bundle = DIST / "memviz"
    if not (bundle / "memviz").is_file():
        raise SystemExit("no dist/memviz: run `make package` first")
    unpacked = _size(bundle) / 1e6
    tarball = next(DIST.glob("memviz-*-linux-x86_64.tar.zst"), None)
    deb = next(DIST.glob("memviz_*_amd64.deb"), None)
    start = statistics.median(start_seconds(bundle / "memviz") for _ in range(3))
    rows = [Result("bundle, unpacked", unpacked, "MB", "≤ 900 MB", unpacked <= 900,
                   "dist/memviz after pruning")]
    for label, path in (("tar.zst", tarball), (".deb", deb)):
        if path is not None:
            mb = _size(path) / 1e6
            rows.append(Result(f"bundle, {label}", mb, "MB", "≤ 250 MB", mb <= 250, path.name))
    rows.append(Result("frozen app: start to shown window", start * 1000, "ms", "≤ 5000 ms",
                       start <= 5.0, "median of 3, offscreen, from exec"))
    return rows


if __name__ == "__main__":
    print_table(measure())
    sys.exit(0)
