"""What ``memviz.track()`` costs a user's own training loop (``python -m benchmarks.program``).

The loop is gpt2-tiny's step as a user writes it (batch 4 × 256, AdamW), tracked
through discovery alone: no model or optimizer is passed. Configurations are
interleaved round by round in this one process, the order rotated, and each
round's steps compared with that round's untracked steps (the median ratio over
the rounds), as in ``benchmarks.tracking``.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from memviz.models.presets import PRESETS
from memviz.program.api import Tracking

from .common import Result, print_table

CONFIGS = ("untracked", "track samples", "track tensors")
BUDGETS = {"track samples": 0.02}


def user_step(model, optimizer) -> None:
    ids = torch.randint(0, 256, (4, 256))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    del loss, ids
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@contextmanager
def _config(name: str, folder: Path):
    if name == "untracked":
        with nullcontext():
            yield
        return
    level = name.removeprefix("track ")
    with Tracking(folder / f"{level}.memviz", track=level, force=True, scan_heap=False):
        yield


def measure(rounds: int = 20, steps: int = 3) -> list[Result]:
    torch.manual_seed(0)
    model = PRESETS["gpt2-tiny"].build(torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        user_step(model, optimizer)
    ratios: dict[str, list[float]] = {c: [] for c in CONFIGS}
    untracked: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        for round_no in range(rounds):
            medians = {}
            first = round_no % len(CONFIGS)
            for name in CONFIGS[first:] + CONFIGS[:first]:
                with _config(name, Path(folder)):
                    user_step(model, optimizer)  # warm-up inside the configuration
                    times = []
                    for _ in range(steps):
                        started = time.perf_counter()
                        user_step(model, optimizer)
                        times.append(time.perf_counter() - started)
                medians[name] = statistics.median(times)
            untracked.append(medians["untracked"])
            for name in CONFIGS:
                ratios[name].append(medians[name] / medians["untracked"])
    results = [Result("user's loop, untracked", statistics.median(untracked) * 1000, "ms", "",
                      True, f"gpt2-tiny 4×256 AdamW, {rounds} rounds of {steps} steps")]
    for name in CONFIGS[1:]:
        over = statistics.median(ratios[name]) - 1
        budget = BUDGETS.get(name)
        results.append(Result(f"overhead: memviz.track, {name.removeprefix('track ')}",
                              over * 100, "%", "" if budget is None else f"≤ {budget:.0%}",
                              True if budget is None else over <= budget,
                              "discovery hooks, sampler, recorder to a file"
                              if name == "track samples" else
                              "what the tensor tracker costs under memviz run too"))
    return results


if __name__ == "__main__":
    print_table(measure())
