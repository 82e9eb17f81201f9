"""Tracking overhead on the default model's training step (gpt2-tiny, AdamW, 4 × 256).

Every configuration runs in this one process, interleaved round by round, with
the order rotated from round to round so that none always follows the same
other. Each round compares a configuration's steps with the untracked steps of
the same round, and the figure is the median of those ratios over the rounds: a
shared VM's speed drifts by 20 % or more within a minute, which a ratio of
medians over the whole run would report as overhead.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager

import torch

from memviz.core.spec import RunSpec
from memviz.models import load_task
from memviz.tracking import TensorTracker
from memviz.tracking.step import train_step
from memviz.worker.gpu import NvmlDevice
from memviz.worker.samplers import MemorySampler

from .common import Result

CONFIGS = ("untracked", "samples", "tensors", "tensors+stacks", "profiler",
           "profiler+shapes")


@contextmanager
def _config(name: str, model):
    sampler = tracker = prof = None
    if name != "untracked":
        sampler = MemorySampler(20.0, lambda row: None, time.monotonic, time.monotonic(),
                                NvmlDevice(False, "off"))
        sampler.start()
    if name.startswith("tensors"):
        tracker = TensorTracker(time.monotonic, time.monotonic(), stacks=name.endswith("stacks"))
        tracker.start(model)
        sampler.tracker = tracker
    if name.startswith("profiler"):
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                      profile_memory=True, record_shapes=name.endswith("shapes"))
        prof.__enter__()
    try:
        yield tracker
    finally:
        if prof is not None:
            prof.__exit__(None, None, None)
        if tracker is not None:
            tracker.stop()
        if sampler is not None:
            sampler.stop()


def measure(rounds: int = 20, steps: int = 2) -> list[Result]:
    torch.manual_seed(0)
    task = load_task(RunSpec())
    optimizer = torch.optim.AdamW(task.model.parameters(), lr=1e-3)
    for _ in range(3):
        train_step(task, optimizer)
    ratios: dict[str, list[float]] = {c: [] for c in CONFIGS}
    untracked: list[float] = []
    for round_no in range(rounds):
        medians = {}
        first = round_no % len(CONFIGS)  # each configuration takes every place in the order
        for name in CONFIGS[first:] + CONFIGS[:first]:
            with _config(name, task.model) as tracker:
                train_step(task, optimizer, tracker)  # warm-up inside the configuration
                times = []
                for _ in range(steps):
                    started = time.perf_counter()
                    train_step(task, optimizer, tracker)
                    times.append(time.perf_counter() - started)
            medians[name] = statistics.median(times)
        untracked.append(medians["untracked"])
        for name in CONFIGS:
            ratios[name].append(medians[name] / medians["untracked"])
    over = {c: statistics.median(r) - 1 for c, r in ratios.items()}
    results = [Result("training step, untracked", statistics.median(untracked) * 1000, "ms", "",
                      True, f"gpt2-tiny 4×256 AdamW, {rounds} rounds of {steps} steps")]
    budgets = {"samples": 0.02, "tensors": 0.15}
    notes = {"profiler": "profile_memory=True",
             "profiler+shapes": "and record_shapes=True: the shapes memviz records too"}
    for name in CONFIGS[1:]:
        budget = budgets.get(name)
        ok = True if budget is None else over[name] <= budget
        note = notes.get(name, "")
        if name == "tensors":
            ok = ok and over["tensors"] < over["profiler"] / 2
            note = f"profiler's overhead / 2 = {over['profiler'] / 2:+.1%}"
        results.append(Result(f"overhead: {name}", over[name] * 100, "%",
                              "" if budget is None else f"≤ {budget:.0%}", ok, note))
    return results
