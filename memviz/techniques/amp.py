"""``amp``: autocast, so matmuls and their saved inputs run in bf16/fp16 (torch.amp)."""

from __future__ import annotations

from typing import Any

from .base import Param, Technique


class Amp(Technique):
    name = "amp"
    group = "training strategy"
    description = "autocast: matmuls run in bf16/fp16 while the weights stay fp32 (torch.amp)"
    params = (Param("dtype", str, "bf16", "compute dtype inside autocast",
                    choices=("bf16", "fp16")),)
    conflicts = frozenset({"low-precision"})

    def refusal(self, spec, params, names) -> str | None:
        if params["dtype"] == "fp16" and spec.device == "cpu":
            return ("fp16 autocast is not offered on CPU: there is no loss scaler for it there "
                    "and CPUs without AVX512-FP16 emulate fp16 (~25× slower); use dtype=bf16, "
                    "which CPU autocast supports")
        return None

    def forward_context(self, params: dict[str, Any], device: str):
        import torch

        dtype = torch.bfloat16 if params["dtype"] == "bf16" else torch.float16
        return torch.autocast(device_type=device.partition(":")[0], dtype=dtype)

    def grad_scaler(self, params: dict[str, Any], device: str) -> Any:
        if params["dtype"] == "fp16" and device.startswith("cuda"):
            import torch

            return torch.amp.GradScaler("cuda")
        return None
