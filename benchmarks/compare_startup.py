"""A comparison's start-up share: ``python -m benchmarks.compare_startup``.

Four sets on gpt2-tiny (2 steps each), run twice: each set's worker started cold
(a fresh process importing torch and transformers) and forked from the warm parent
(the default). For each set: the seconds from its start to its worker's
``run_started`` (start-up: process, imports, model load), and the whole set. The
simulations that predict each set are turned off here, so the figures are the
sets' own. Budget: a set's start-up well under a second when warm.
"""

from __future__ import annotations

import statistics
import sys
import time

from memviz.cli.formatting import table
from memviz.compare import Comparison, parse_set
from memviz.core.spec import RunSpec

SETS = ["amp", "checkpointing", "optimizer=sgd"]


def timed_comparison(warm: bool) -> tuple[list[float], float, list[float]]:
    """(start-up of each set, the whole comparison's seconds, each set's RSS at start)."""
    base = RunSpec(model="gpt2-tiny", steps=2, batch_size=2, seq_len=128)
    sets = [parse_set("baseline"), *(parse_set(s) for s in SETS)]
    comparison = Comparison(base, sets, warm_start=warm, simulate_predictions=False)
    starts: dict[int, float] = {}
    startup: dict[int, float] = {}
    began = time.monotonic()
    while not comparison.finished:
        started = comparison.poll()
        if started is not None:
            starts[started.run.run_id] = time.monotonic()
        current = comparison.current
        if current is not None and current.run.run_id not in startup and \
                current.run.state not in ("starting",):
            startup[current.run.run_id] = time.monotonic() - starts[current.run.run_id]
        time.sleep(0.005)
    total = time.monotonic() - began
    rss = [float(r.run.samples.column("rss")[0]) if len(r.run.samples) else float("nan")
           for r in comparison.results]
    return [startup[r.run.run_id] for r in comparison.results if r.run.run_id in startup], \
        total, rss


def main() -> int:
    rows = []
    for warm in (False, True):
        startup, total, rss = timed_comparison(warm)
        share = sum(startup) / total
        rows.append(["warm parent (fork)" if warm else "cold (fresh process)",
                     f"{statistics.median(startup):.2f} s",
                     ", ".join(f"{s:.2f}" for s in startup), f"{total:.1f} s", f"{share:.0%}",
                     f"{(max(rss) - min(rss)) / 2**20:.0f} MiB"])
        print("  ".join(rows[-1]), file=sys.stderr, flush=True)
    print(table(["workers", "start-up per set (median)", "each set", "comparison",
                 "start-up share", "RSS at first sample, spread"], rows, numbers=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
