"""How a plain ``nn.Module`` (not a transformers model) is fed and what it returns.

The common conventions of language models people write themselves:
- ``forward(idx)`` returns logits, or a tuple whose first tensor is the logits;
- ``forward(idx, targets)`` returns ``(logits, loss)`` and computes its own loss
  (karpathy's nanoGPT); without targets such a model may give the last position's
  logits only, so it is always given its targets.
The convention found is said in the run's log, so a user sees how the model ran.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

_TARGET_NAMES = ("targets", "target", "labels", "y")


@dataclass(frozen=True)
class Convention:
    takes_targets: bool  # forward(idx, targets)
    description: str


def find_convention(model: nn.Module) -> Convention:
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 2 and positional[1].name in _TARGET_NAMES:
        name = positional[1].name
        return Convention(True, f"forward(idx, {name}) with next-token {name}; the model's own "
                                "loss when it returns (logits, loss)")
    return Convention(False, "forward(idx) returns the logits (or a tuple, logits first); "
                             "memviz adds next-token cross-entropy")


def split_output(output) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits, the model's own loss or None) from what a plain model returned."""
    if isinstance(output, torch.Tensor):
        return output, None
    if isinstance(output, tuple | list):
        tensors = [t for t in output if isinstance(t, torch.Tensor)]
        if not tensors:
            raise TypeError(f"the model returned a {type(output).__name__} with no tensor")
        logits = tensors[0]
        loss = next((t for t in tensors[1:] if t.dim() == 0), None)
        return logits, loss
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits, getattr(output, "loss", None)
    raise TypeError(f"the model returned a {type(output).__name__}, not logits: memviz reads "
                    "a tensor, a tuple with the logits first, or an output with .logits")


def plain_loss(model: nn.Module, convention: Convention, ids: torch.Tensor) -> torch.Tensor:
    """The training loss of a plain model on a window of ``seq_len + 1`` token ids."""
    # contiguous, as a data loader gives them (nanoGPT calls targets.view(-1))
    inputs, targets = ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    output = model(inputs, targets) if convention.takes_targets else model(inputs)
    logits, own = split_output(output)
    del output
    if own is not None:
        return own
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                       targets.reshape(-1))


def plain_logits(model: nn.Module, convention: Convention, ids: torch.Tensor) -> torch.Tensor:
    """Scores for every position (given targets when the model only then gives them all)."""
    if convention.takes_targets:
        return split_output(model(ids[:, :-1].contiguous(), ids[:, 1:].contiguous()))[0]
    return split_output(model(ids))[0]
