"""Tracking overhead on a training step (``python -m benchmarks.tracking``): the default
model (gpt2-tiny, AdamW, 4 × 256) and a GPT-2-small-sized one (12 layers × 768).

Every configuration runs in this one process, interleaved round by round, with the
order rotated from round to round. Each round compares a configuration's steps with
the untracked steps of the same round, and the figure is the median of those ratios
over the rounds (wall clock, and CPU time beside it): a shared VM's speed drifts by
20 % or more within a minute, which a ratio of medians over the whole run would
report as overhead. The profiler runs as a user runs it to get memory per step:
started, stopped and its events read every step.

glibc gives the memory a step frees back to the system and faults it in again the
next step: on 12 × 768 that is 90,000 to 185,000 page faults a step (0.35 to 0.7 GB),
varying by a third from step to step whatever is tracked, which buries an overhead of
a few percent. So the benchmark's process keeps what it frees (``KEEP_FREED``, set by
re-running itself, or by a process of its own under ``python -m benchmarks``; the steps
are ~10 % faster and fault nothing); ``--allocator-as-is`` measures with glibc's
defaults.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from contextlib import contextmanager

import torch

from memviz.core.detail import parse_detail
from memviz.core.spec import RunSpec
from memviz.models import load_task
from memviz.models.data import TokenStream
from memviz.models.task import Task
from memviz.tracking import TensorTracker
from memviz.tracking.step import train_step
from memviz.worker.gpu import NvmlDevice
from memviz.worker.samplers import MemorySampler

from .common import Result, print_table

# the last tracked one is a detailed step as a worker runs it: stacks and its FLOPs counted
WORKER_DETAILED = "tensors+stacks+FLOPs, detailed step"
CONFIGS = ("untracked", "samples", "tensors, cheap step", "tensors, detailed step",
           "tensors+stacks, detailed step", WORKER_DETAILED, "profiler, read every step")
STACKS_BUDGET = 0.05  # Python stacks over a detailed step without them
DETAIL_OVER_STEPS = 100  # the default detail policy's share of detailed steps, over a run
KEEP_FREED = {"MALLOC_TRIM_THRESHOLD_": "4000000000", "MALLOC_MMAP_THRESHOLD_": "4000000000"}


@contextmanager
def _config(name: str, model):
    sampler = tracker = None
    if name != "untracked":
        sampler = MemorySampler(20.0, lambda row: None, time.monotonic, time.monotonic(),
                                NvmlDevice(False, "off"))
        sampler.start()
    if name.startswith("tensors"):
        tracker = TensorTracker(time.monotonic, time.monotonic(),
                                stacks=name.startswith("tensors+stacks"))
        tracker.start(model)
        tracker.set_detail(name.endswith("detailed step"))
        tracker.count_flops(name == WORKER_DETAILED)
        sampler.tracker = tracker
    try:
        yield tracker
    finally:
        if tracker is not None:
            tracker.stop()
        if sampler is not None:
            sampler.stop()


def _step(name: str, task, optimizer, tracker, batch: tuple[int, int]) -> None:
    if name.startswith("profiler"):  # as a user gets memory per step from it
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                    profile_memory=True) as prof:
            train_step(task, optimizer, None, batch_size=batch[0], seq_len=batch[1])
        prof.key_averages()
        return
    train_step(task, optimizer, tracker, batch_size=batch[0], seq_len=batch[1])


def gpt2_small_sized() -> Task:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=256, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
    model = GPT2LMHeadModel(config)
    return Task("gpt2-small-sized", model, "causal", TokenStream(None, 256, 0))


def measure_model(label: str, task, batch: tuple[int, int], rounds: int,
                  steps: int) -> list[Result]:
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(task.model.parameters(), lr=1e-3)
    for _ in range(2):
        train_step(task, optimizer, batch_size=batch[0], seq_len=batch[1])
    wall: dict[str, list[float]] = {c: [] for c in CONFIGS}
    cpu: dict[str, list[float]] = {c: [] for c in CONFIGS}
    untracked = []
    loads = []
    for round_no in range(rounds):
        medians, cpus = {}, {}
        first = round_no % len(CONFIGS)
        for name in CONFIGS[first:] + CONFIGS[:first]:
            with _config(name, task.model) as tracker:
                _step(name, task, optimizer, tracker, batch)  # warm-up inside the config
                times, cpu_times = [], []
                for _ in range(steps):
                    started, started_cpu = time.perf_counter(), time.process_time()
                    _step(name, task, optimizer, tracker, batch)
                    times.append(time.perf_counter() - started)
                    cpu_times.append(time.process_time() - started_cpu)
            medians[name], cpus[name] = statistics.median(times), statistics.median(cpu_times)
        loads.append(os.getloadavg()[0])
        untracked.append(medians["untracked"])
        for name in CONFIGS:
            wall[name].append(medians[name] / medians["untracked"])
            cpu[name].append(cpus[name] / cpus["untracked"])
    over = {c: statistics.median(r) - 1 for c, r in wall.items()}
    over_cpu = {c: statistics.median(r) - 1 for c, r in cpu.items()}
    policy = parse_detail(RunSpec().detail)
    share = sum(policy.detailed(s) for s in range(DETAIL_OVER_STEPS)) / DETAIL_OVER_STEPS
    # the default level: a worker's detailed steps take Python stacks and count FLOPs
    default = over["tensors, cheap step"] * (1 - share) + over[WORKER_DETAILED] * share
    default_cpu = (over_cpu["tensors, cheap step"] * (1 - share)
                   + over_cpu[WORKER_DETAILED] * share)
    loaded = max(loads) > (os.cpu_count() or 1)
    results = [Result(f"{label}: training step, untracked", statistics.median(untracked) * 1000,
                      "ms", "", True, f"{batch[0]}×{batch[1]} AdamW, {rounds} rounds of {steps}"
                      + (f"; LOADED machine (load {max(loads):.1f})" if loaded else ""))]
    budgets = {"samples": 0.02}
    for name in CONFIGS[1:]:
        budget = budgets.get(name)
        results.append(Result(f"{label}: overhead, {name}", over[name] * 100, "%",
                              "" if budget is None else f"≤ {budget:.0%}",
                              True if budget is None else over[name] <= budget,
                              f"CPU time {over_cpu[name]:+.1%}"))
    stacks = statistics.median(
        a / b for a, b in zip(wall["tensors+stacks, detailed step"],
                              wall["tensors, detailed step"], strict=True)) - 1
    results.append(Result(f"{label}: Python stacks over a detailed step", stacks * 100, "%",
                          f"≤ {STACKS_BUDGET:.0%}", stacks <= STACKS_BUDGET,
                          "the same round's detailed step without stacks"))
    flops = statistics.median(
        a / b for a, b in zip(wall[WORKER_DETAILED], wall["tensors+stacks, detailed step"],
                              strict=True)) - 1
    results.append(Result(f"{label}: FLOPs counted over a detailed step", flops * 100, "%",
                          "", True, "the same round's detailed step with stacks, not counting"))
    results.append(Result(f"{label}: overhead, tensors+stacks (the default)", default * 100, "%",
                          "≤ 5%", default <= 0.05,
                          f"{RunSpec().detail}: {share:.0%} of {DETAIL_OVER_STEPS} steps with "
                          f"every op; CPU time {default_cpu:+.1%}"))
    return results


def measure_keeping_freed() -> list[Result]:
    """``measure()`` in a process of its own that keeps what it frees (glibc reads
    ``KEEP_FREED`` when the process starts): how ``python -m benchmarks`` runs it."""
    import dataclasses
    import json
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", "import dataclasses, json; from benchmarks.tracking import "
                               "measure; print(json.dumps([dataclasses.asdict(r) for r in "
                               "measure()]))"],
        capture_output=True, text=True, check=True, env={**os.environ, **KEEP_FREED},
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    fields = {f.name for f in dataclasses.fields(Result)}
    return [Result(**{k: v for k, v in row.items() if k in fields})
            for row in json.loads(done.stdout.strip().splitlines()[-1])]


def measure(rounds: int = 12, steps: int = 2) -> list[Result]:
    return [*measure_model("gpt2-tiny", load_task(RunSpec()), (4, 256), rounds, steps),
            *measure_model("12 × 768", gpt2_small_sized(), (1, 128), max(rounds // 2, 4),
                           steps)]


if __name__ == "__main__":
    as_is = "--allocator-as-is" in sys.argv[1:]
    if not as_is and any(os.environ.get(k) != v for k, v in KEEP_FREED.items()):
        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.tracking", *sys.argv[1:]],
                  {**os.environ, **KEEP_FREED})
    print("glibc's allocator: " + ("as is (it gives freed memory back and faults it in again)"
                                   if as_is else "keeps what it frees (KEEP_FREED)"))
    print_table(measure())
