"""FLOPs of one step, counted by torch's own flop counter after the measured steps.

The count runs once the tracker and the samplers have stopped, on one batch of
the run's shape (a training step's forward and backward, an inference
forward, a generation's prefill), so it costs the measurement nothing. It runs on
fake tensors (the real weights seen as fake: shapes, no arithmetic), so it costs a
set a fraction of a step however slow its arithmetic (bf16 on a CPU: 7 s a step);
a model the fake mode cannot run is counted for real.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..core.spec import RunSpec
from ..techniques.plan import Plan


def flops_per_step(task, spec: RunSpec, plan: Plan) -> int | None:
    """Matmul and convolution FLOPs of one step (None where the counter cannot run)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            counted = _count(task, spec, plan)
    except Exception:  # a kernel or a technique fake tensors cannot run: count it for real
        counted = None
    if counted is None:
        _forget_gradients(task)
        counted = _count(task, spec, plan)
    return counted


def _forget_gradients(task) -> None:
    for p in task.model.parameters():
        p.grad = None


def _count(task, spec: RunSpec, plan: Plan) -> int | None:
    device = torch.device(spec.device)
    try:
        batch = task.make_batch(spec.batch_size, spec.seq_len, device)
        counter = FlopCounterMode(display=False)
        if spec.mode == "train":
            with counter, plan.forward_context():
                loss = task.loss(batch)
                loss.backward()
            _forget_gradients(task)
        else:
            with counter, torch.no_grad(), plan.forward_context():
                task.logits(batch)
        return int(counter.get_total_flops())
    except (RuntimeError, NotImplementedError, TypeError):  # a layout the counter lacks
        return None
