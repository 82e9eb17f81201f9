"""A short description of the loaded model: sizes and the module tree."""

from __future__ import annotations

from torch import nn

from ..techniques.structure import structure_of
from ..tracking.components import storages, stored_bytes


def unique_parameter_bytes(model: nn.Module, trainable: bool | None = None) -> int:
    """Bytes of parameters, tied weights counted once (one storage, one count).

    ``trainable`` picks only trainable (True) or frozen (False) parameters."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if trainable is not None and p.requires_grad != trainable:
            continue
        for key, nbytes in storages(p):
            if key not in seen:
                seen.add(key)
                total += nbytes
    return total


def summarize(name: str, kind: str, model: nn.Module) -> dict:
    """Sizes, and the module tree: [name, class, own parameters, own trainable bytes,
    own frozen bytes] per module (a tied weight counts under each module using it)."""
    params = list(model.parameters())  # parameters() already yields tied ones once
    tree = []
    for qualname, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        tree.append([
            qualname, type(module).__name__, sum(p.numel() for p in own),
            sum(stored_bytes(p) for p in own if p.requires_grad),
            sum(stored_bytes(p) for p in own if not p.requires_grad),
        ])
    return {
        "name": name,
        "kind": kind,
        "class": type(model).__name__,
        "parameters": sum(p.numel() for p in params),
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        "parameter_bytes": unique_parameter_bytes(model),
        "trainable_parameter_bytes": unique_parameter_bytes(model, trainable=True),
        "frozen_parameter_bytes": unique_parameter_bytes(model, trainable=False),
        "trainable_parameter_tensors": sum(1 for p in params if p.requires_grad),
        "buffer_bytes": sum(b.numel() * b.element_size() for b in model.buffers()),
        "dtype": str(params[0].dtype).removeprefix("torch.") if params else None,
        "module_tree": tree,
        "structure": structure_of(model),
    }
