"""A comparison's start-up share: ``python -m benchmarks.compare_startup``.

Four sets on gpt2-tiny (2 steps each), run twice: each set's worker started cold
(a fresh process importing torch and transformers) and forked from the warm parent
(the default), with the simulations that predict each set turned off, so the
figures are the sets' own; then as a user runs it (warm, each set simulated before
it runs). For each set: the seconds from its start to its worker's ``run_started``
(start-up: process, imports, model load), and what the whole comparison spends
outside the sets' measured steps, per set. Budgets: a set's start-up well under a
second when warm; outside its steps, 2 s a set.
"""

from __future__ import annotations

import statistics
import sys
import time

from memviz.cli.formatting import table
from memviz.compare import Comparison, parse_set
from memviz.core.spec import RunSpec

SETS = ["amp", "checkpointing", "optimizer=sgd"]


def timed_comparison(warm: bool, simulate: bool = False
                     ) -> tuple[list[float], float, list[float], float]:
    """(start-up of each set, the whole comparison's seconds, each set's RSS at start,
    the seconds of every set's measured steps)."""
    base = RunSpec(model="gpt2-tiny", steps=2, batch_size=2, seq_len=128)
    sets = [parse_set("baseline"), *(parse_set(s) for s in SETS)]
    comparison = Comparison(base, sets, warm_start=warm, simulate_predictions=simulate)
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
    steps = sum(s.seconds for r in comparison.results for s in r.run.steps)
    return [startup[r.run.run_id] for r in comparison.results if r.run.run_id in startup], \
        total, rss, steps


def main() -> int:
    rows = []
    for warm, simulate in ((False, False), (True, False), (True, True)):
        startup, total, rss, steps = timed_comparison(warm, simulate)
        share = sum(startup) / total
        outside = (total - steps) / (1 + len(SETS))
        rows.append([("warm parent (fork)" if warm else "cold (fresh process)")
                     + (", sets simulated" if simulate else ""),
                     f"{statistics.median(startup):.2f} s",
                     ", ".join(f"{s:.2f}" for s in startup), f"{total:.1f} s", f"{share:.0%}",
                     f"{outside:.1f} s", f"{(max(rss) - min(rss)) / 2**20:.0f} MiB"])
        print("  ".join(rows[-1]), file=sys.stderr, flush=True)
    print(table(["workers", "start-up per set (median)", "each set", "comparison",
                 "start-up share", "outside steps, per set (≤ 2 s)",
                 "RSS at first sample, spread"], rows, numbers=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
