"""FLOPs of one step, counted by torch's own flop counter after the measured steps.

The count runs once the tracker and the samplers have stopped, on one batch of
the run's shape (a training step's forward and backward, an inference
forward, a generation's prefill), so it costs the measurement nothing.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..core.spec import RunSpec
from ..techniques.plan import Plan


def flops_per_step(task, spec: RunSpec, plan: Plan) -> int | None:
    """Matmul and convolution FLOPs of one step (None where the counter cannot run)."""
    device = torch.device(spec.device)
    try:
        batch = task.make_batch(spec.batch_size, spec.seq_len, device)
        counter = FlopCounterMode(display=False)
        if spec.mode == "train":
            with counter, plan.forward_context():
                loss = task.loss(batch)
                loss.backward()
            for p in task.model.parameters():
                p.grad = None
        else:
            with counter, torch.no_grad(), plan.forward_context():
                task.logits(batch)
        return int(counter.get_total_flops())
    except (RuntimeError, NotImplementedError, TypeError):  # a layout the counter lacks
        return None
