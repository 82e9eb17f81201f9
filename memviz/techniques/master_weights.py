"""An optimizer wrapper that updates fp32 copies of low-precision weights.

torch ships no such wrapper for CPU (apex's is CUDA-only), so this is the
small, standard recipe: before each step, the low-precision gradients are
copied into the fp32 masters' ``.grad``; the inner optimizer updates the
masters; the result is copied back into the model's weights.
"""

from __future__ import annotations

import torch


class MasterWeights:
    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.model_params: list[torch.Tensor] = []
        self.masters: list[torch.Tensor] = []
        for group in optimizer.param_groups:
            masters = []
            for p in group["params"]:
                master = p.detach().float().clone().requires_grad_(True)
                self.model_params.append(p)
                self.masters.append(master)
                masters.append(master)
            group["params"] = masters
        optimizer.state.clear()
        self.optim = optimizer  # the tracker reads the inner optimizer's state here

    @property
    def param_groups(self):
        return self.optim.param_groups

    @property
    def state(self):
        return self.optim.state

    def held_tensors(self) -> list[torch.Tensor]:
        """The fp32 copies: optimizer-owned memory, like its state."""
        return list(self.masters)

    @torch.no_grad()
    def step(self) -> None:
        for p, master in zip(self.model_params, self.masters, strict=True):
            master.grad = None if p.grad is None else p.grad.float()
        self.optim.step()
        for p, master in zip(self.model_params, self.masters, strict=True):
            p.copy_(master)
            master.grad = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.model_params:
            p.grad = None
