"""``grad-accum``: the same effective batch in k micro-batches, one optimizer step."""

from __future__ import annotations

from .base import Param, Technique


class GradAccum(Technique):
    name = "grad-accum"
    group = "training strategy"
    description = "gradient accumulation: the batch in k micro-batches, one optimizer step"
    modes = frozenset({"train"})
    params = (Param("micro_batches", int, 4, "number of micro-batches per step",
                    low=2, high=1024),)

    def refusal(self, spec, params, names) -> str | None:
        k = params["micro_batches"]
        if spec.batch_size % k:
            return f"batch size {spec.batch_size} does not split into {k} equal micro-batches"
        return None
