"""Tracking overhead on the default model's training step (gpt2-tiny, AdamW, 4 × 256).

Every configuration runs in this one process, interleaved round by round so that
drift of the machine hits them all alike; the figure is the median step time.
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

CONFIGS = ("untracked", "samples", "tensors", "tensors+stacks", "profiler")


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
    if name == "profiler":
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                      profile_memory=True)
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


def measure(rounds: int = 5, steps: int = 6) -> list[Result]:
    torch.manual_seed(0)
    task = load_task(RunSpec())
    optimizer = torch.optim.AdamW(task.model.parameters(), lr=1e-3)
    for _ in range(3):
        train_step(task, optimizer)
    times: dict[str, list[float]] = {c: [] for c in CONFIGS}
    for _ in range(rounds):
        for name in CONFIGS:
            with _config(name, task.model) as tracker:
                train_step(task, optimizer, tracker)  # warm-up inside the configuration
                for _ in range(steps):
                    started = time.perf_counter()
                    train_step(task, optimizer, tracker)
                    times[name].append(time.perf_counter() - started)
    median = {c: statistics.median(v) for c, v in times.items()}
    base = median["untracked"]
    over = {c: median[c] / base - 1 for c in CONFIGS}
    results = [Result("training step, untracked", base * 1000, "ms", "", True,
                      f"gpt2-tiny 4×256 AdamW, median of {rounds * steps}")]
    budgets = {"samples": 0.02, "tensors": 0.15, "tensors+stacks": None, "profiler": None}
    for name in CONFIGS[1:]:
        budget = budgets[name]
        ok = True if budget is None else over[name] <= budget
        note = ""
        if name == "tensors":
            ok = ok and over["tensors"] < over["profiler"] / 2
            note = f"profiler's overhead / 2 = {over['profiler'] / 2:+.1%}"
        results.append(Result(f"overhead: {name}", over[name] * 100, "%",
                              "" if budget is None else f"≤ {budget:.0%}", ok, note))
    return results
