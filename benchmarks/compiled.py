"""A compiled training step, tracked and not (``python -m benchmarks.compiled``).

The LM of tests/programs/compiled_loop.py at 4 blocks of 256 (model and loss compiled
together with inductor, AdamW, 8 × 256 tokens), in one process: compiled once, then
rounds of steps timed untracked and under ``memviz.track()``, interleaved so that a
drifting machine shows in all: untracked, tracked with every op (detailed) and
tracked with the cheap signals only. The default detail (first:2, every:50) is 3 %
detailed steps and 97 % cheap ones over 100 steps; its overhead is weighed from the
two medians, as in ``benchmarks.tracking``. Dynamo's counters are checked to stay
the same: the same compiled code runs in every round.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

from .common import Result, print_table


def measure(rounds: int = 6, steps: int = 10) -> list[Result]:
    import torch
    from torch._dynamo.utils import counters

    import memviz

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "programs"))
    from compiled_loop import LM

    torch.manual_seed(0)
    model = LM(width=256, blocks=4, vocab=256)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 256, (8, 256))

    @torch.compile
    def loss_of(ids):
        return torch.nn.functional.cross_entropy(model(ids).reshape(-1, 256), ids.reshape(-1))

    def step() -> float:
        started = time.perf_counter()
        loss_of(ids).backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - started

    compile_started = time.perf_counter()
    step()
    compile_s = time.perf_counter() - compile_started
    graphs = dict(counters["stats"])
    plain, detailed, cheap = [], [], []
    folder = tempfile.mkdtemp(prefix="memviz-bench-")
    for r in range(rounds):
        plain += [step() for _ in range(steps)]
        with memviz.track(output=os.path.join(folder, f"a{r}.memviz"), force=True,
                          detail="all"):
            detailed += [step() for _ in range(steps)]
        with memviz.track(output=os.path.join(folder, f"c{r}.memviz"), force=True,
                          detail="every:1000000"):
            cheap += [step() for _ in range(steps)][1:]  # its step 0 is detailed
    same = dict(counters["stats"]) == graphs
    base = statistics.median(plain)
    over = {name: (statistics.median(times) / base - 1) * 100
            for name, times in (("detailed", detailed), ("cheap", cheap))}
    default = 0.03 * over["detailed"] + 0.97 * over["cheap"]
    note = f"{rounds} interleaved rounds of {steps}; graphs the same: {same}"
    return [Result("compiled step (inductor), untracked", base * 1e3, "ms", "", True,
                   f"4 × 256 LM, 8×256 AdamW, model and loss compiled; first step "
                   f"{compile_s:.1f} s "
                   "with the compile"),
            Result("compiled step: overhead, detailed step", over["detailed"], "%", "",
                   same, note),
            Result("compiled step: overhead, cheap step", over["cheap"], "%", "", same, note),
            Result("compiled step: overhead, tensors+stacks (the default)", default, "%",
                   "≤ 5%", default <= 5 and same, "first:2,every:50: 3% of 100 steps "
                   "with every op")]


if __name__ == "__main__":
    print_table(measure())
