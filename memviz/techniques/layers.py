"""Finding a model's parts: its stack of repeated blocks and its linear layers.

Used by the techniques that restructure a model. Hugging Face models keep
their blocks in one ``nn.ModuleList`` (``transformer.h``, ``model.layers``,
``encoder.layer``); a plain model is searched for its largest ModuleList.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .base import TechniqueError


def block_list(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """The (parent, attribute, ModuleList) holding the model's repeated blocks."""
    best: tuple[nn.Module, str, nn.ModuleList] | None = None
    for parent in model.modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.ModuleList) and len(child) >= 2 and (
                    best is None or len(child) > len(best[2])):
                best = (parent, attr, child)
    if best is None:
        raise TechniqueError(f"{type(model).__name__} has no stack of repeated blocks "
                             "(an nn.ModuleList of layers) to work on")
    return best


def set_depth_in_config(model: nn.Module, depth: int) -> None:
    """Tell a Hugging Face config the new number of layers (layer counts drive caches)."""
    config = getattr(model, "config", None)
    if config is None:
        return
    for key in ("num_hidden_layers", "n_layer"):
        if hasattr(config, key):
            setattr(config, key, depth)
    types = getattr(config, "layer_types", None)
    if isinstance(types, list):
        config.layer_types = types[:depth] + types[-1:] * max(0, depth - len(types))


def renumber_layers(blocks: nn.ModuleList) -> None:
    """Attention modules that index the KV cache by ``layer_idx`` get their new index."""
    for i, block in enumerate(blocks):
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i


def output_weights(model: nn.Module) -> set[int]:
    """Storages of weights tied to an embedding (a tied output head is left alone)."""
    tied = set()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            tied.add(module.weight.untyped_storage()._cdata)
    return tied


def linear_layers(model: nn.Module, *, skip_tied: bool = True) -> list[tuple[str, nn.Linear]]:
    """Every ``nn.Linear`` except heads that share their weight with an embedding."""
    tied = output_weights(model) if skip_tied else set()
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and m.weight.untyped_storage()._cdata not in tied]


def conv1d_to_linear(model: nn.Module) -> int:
    """Replace GPT-2's ``Conv1D`` (x @ W + b) with the equivalent ``nn.Linear``.

    torch's and torchao's quantizers, pruning and factorisation all act on
    ``nn.Linear``; without this GPT-2's projections would be skipped silently.
    """
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        return 0
    replaced = 0
    for parent in list(model.modules()):
        for attr, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                nx, nf = child.weight.shape
                linear = nn.Linear(nx, nf, device=child.weight.device, dtype=child.weight.dtype)
                with torch.no_grad():
                    linear.weight.copy_(child.weight.t())
                    linear.bias.copy_(child.bias)
                linear.weight.requires_grad_(child.weight.requires_grad)
                linear.bias.requires_grad_(child.bias.requires_grad)
                setattr(parent, attr, linear)
                replaced += 1
    return replaced


class Checkpointed(nn.Module):
    """Runs the wrapped block under non-reentrant checkpointing while training."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, *args, **kwargs):
        if not self.training or not torch.is_grad_enabled():
            return self.block(*args, **kwargs)
        return checkpoint(self.block, *args, use_reentrant=False, **kwargs)
