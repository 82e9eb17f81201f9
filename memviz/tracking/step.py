"""One training step in this process, with the same phase marks as the worker's runner.

For measuring the tracker on its own (tests, benchmarks), without a worker process.
"""

from __future__ import annotations

import torch

from ..models.task import Task


def train_step(task: Task, optimizer: torch.optim.Optimizer, tracker=None, *,
               batch_size: int = 4, seq_len: int = 256) -> None:
    batch = task.make_batch(batch_size, seq_len, torch.device("cpu"))
    if tracker:
        tracker.tag(batch.values(), "input")
        tracker.set_phase("forward", 0)
    loss = task.loss(batch)
    if tracker:
        tracker.set_phase("backward", 0)
    loss.backward()
    del loss, batch
    if tracker:
        tracker.set_phase("optimizer", 0)
    optimizer.step()
    if tracker:
        tracker.tag_optimizer_state(optimizer)
    optimizer.zero_grad(set_to_none=True)
    if tracker:
        tracker.set_phase("", 0)
        tracker.take_messages()
