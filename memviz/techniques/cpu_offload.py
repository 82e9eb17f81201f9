"""``cpu-offload``: activations saved for backward go to pinned CPU memory.

``torch.autograd.graph.save_on_cpu``: GPU memory falls by the activations, at
the price of a copy each way. On a CPU run there is nowhere to offload to.
"""

from __future__ import annotations

from typing import Any

from .base import Technique


class CpuOffload(Technique):
    name = "cpu-offload"
    group = "training strategy"
    description = "saved activations offloaded to pinned CPU memory (save_on_cpu)"
    modes = frozenset({"train"})
    devices = frozenset({"cuda"})

    def forward_context(self, params: dict[str, Any], device: str):
        import torch

        return torch.autograd.graph.save_on_cpu(pin_memory=True)
