"""Output drift: how far a technique moves the model's outputs from the unmodified model's.

Reference logits come from the unmodified fp32 model, before any technique and
before tracking starts, on a fixed probe batch; after the run the modified
model sees the same batch. When a technique loads the model in another dtype
(``low-precision``), the reference is a separate fp32 load with the same seed
and weights, freed before the measured model loads. Only inference and generation are measured this
way (training's cost is its loss against the baseline's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..core.spec import RunSpec

PROBE_BATCH, PROBE_LEN = 2, 64


@dataclass
class Reference:
    batch: Any
    logits: torch.Tensor


@torch.no_grad()
def reference(task, spec: RunSpec) -> Reference | None:
    if task.custom_batch is not None:
        return None
    state = task.tokens.generator.get_state()  # the run sees the same data as without
    batch = task.make_batch(PROBE_BATCH, min(PROBE_LEN, spec.seq_len), torch.device(spec.device))
    task.tokens.generator.set_state(state)
    was_training = task.model.training
    task.model.eval()
    logits = task.logits(batch).float()
    task.model.train(was_training)
    return Reference(batch, logits)


def reference_for(spec: RunSpec, model_dtype: str) -> Reference | None:
    """The fp32 model's reference logits, from a load of its own (then freed)."""
    import gc

    from ..models import load_task

    torch.manual_seed(spec.seed)
    task = load_task(spec, "fp32")
    try:
        return reference(task, spec)
    finally:
        del task
        gc.collect()
        torch.manual_seed(spec.seed)  # the measured model is built from the same seed


@torch.no_grad()
def measure(task, ref: Reference) -> dict[str, float]:
    """Relative logit error (‖Δ‖ / ‖reference‖) and top-1 agreement over every position."""
    task.model.eval()
    logits = task.logits(ref.batch).float()
    error = float((logits - ref.logits).norm() / ref.logits.norm().clamp_min(1e-12))
    agree = float((logits.argmax(-1) == ref.logits.argmax(-1)).float().mean())
    return {"relative_logit_error": error, "top1_agreement": agree}
