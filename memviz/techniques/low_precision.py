"""``low-precision``: weights (and so gradients and optimizer state) in bf16/fp16.

The model is built in the target dtype, never converted after an fp32 build
(which would cost a temporary fp32 copy). ``master_weights=true`` keeps an fp32
copy of every trainable weight for the optimizer, the classic mixed-precision
recipe: the update is exact in fp32 and copied back to the low-precision weight.
"""

from __future__ import annotations

from typing import Any

from .base import Param, Technique


class LowPrecision(Technique):
    name = "low-precision"
    group = "model structure"
    description = "weights, gradients and optimizer state in bf16/fp16 (optional fp32 masters)"
    params = (
        Param("dtype", str, "bf16", "weight dtype", choices=("bf16", "fp16")),
        Param("master_weights", bool, False, "keep fp32 master weights for the optimizer"),
    )
    conflicts = frozenset({"amp"})
    order = 0

    def refusal(self, spec, params, names) -> str | None:
        if params["master_weights"] and spec.mode != "train":
            return "master_weights only matters when training"
        if params["dtype"] == "fp16" and spec.device == "cpu" and spec.mode == "train":
            return ("fp16 training on CPU has no loss scaler and CPUs without AVX512-FP16 "
                    "emulate fp16 (~25× slower); use dtype=bf16")
        return None

    def model_dtype(self, params: dict[str, Any]) -> str | None:
        return params["dtype"]

    def wrap_optimizer(self, optimizer, task, params):
        if not params["master_weights"]:
            return optimizer
        from .master_weights import MasterWeights

        return MasterWeights(optimizer)
