"""The optimizers a run can use, each from the library that maintains it.

- ``adamw``, ``sgd``, ``sgd-momentum``: torch.optim.
- ``adafactor``: transformers' Adafactor (factored second moments, no first
  moment), with a fixed learning rate.
- ``adamw-8bit``: bitsandbytes ``AdamW8bit``. It has a native CPU kernel, so
  the first step is as quick as any other; torchao's 8-bit AdamW compiles
  its kernels at run time (~25 s on the first step, and needs a C++ compiler).
- ``adamw-4bit``: torchao ``AdamW4bit`` (bitsandbytes has no 4-bit AdamW):
  expect the first step to include that compilation.
"""

from __future__ import annotations

import torch

from ..core.spec import SpecError


def make_optimizer(name: str, lr: float, params: list[torch.nn.Parameter]):
    if not params:
        raise SpecError("the model has no trainable parameters to optimize")
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "sgd-momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=lr, scale_parameter=False, relative_step=False,
                         warmup_init=False)
    if name == "adamw-8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise SpecError(f"adamw-8bit needs bitsandbytes ({exc})") from None
        # min_8bit_size: bitsandbytes keeps small tensors' state in fp32 (its default 4096)
        return bnb.optim.AdamW8bit(params, lr=lr)
    if name == "adamw-4bit":
        try:
            from torchao.optim import AdamW4bit
        except ImportError as exc:
            raise SpecError(f"adamw-4bit needs torchao ({exc})") from None
        return AdamW4bit(params, lr=lr)
    raise SpecError(f"no optimizer named {name!r}")
