"""Fewer parameters: ``layer-drop``, ``low-rank`` and ``share-layers``.

- ``layer-drop``: keep ``keep`` of the model's blocks, evenly spaced (the first
  and the last always), and tell the config its new depth.
- ``low-rank``: each linear layer W (out × in) becomes two, in → r → out, from
  its truncated SVD, where that has fewer weights; r is ``rank``, or the
  smallest that keeps ``energy`` of the squared singular values.
- ``share-layers``: each group of ``group`` consecutive blocks runs one block's
  weights (ALBERT-style cross-layer sharing); the depth, and so the
  activations, stay the same.
"""

from __future__ import annotations

from typing import Any

from .base import Param, Technique, TechniqueError


class LayerDrop(Technique):
    name = "layer-drop"
    group = "model structure"
    description = "a shallower model: keep only some of the blocks, evenly spaced"
    params = (Param("keep", int, 2, "blocks to keep", low=1, high=1024),)

    def refusal_for_model(self, params, facts, spec) -> str | None:
        if facts.layers is not None and params["keep"] >= facts.layers:
            return (f"keep={params['keep']} but {spec.model} has only {facts.layers} blocks "
                    f"(keep at most {facts.layers - 1})")
        return None
    order = 10

    def apply_model(self, task, params: dict[str, Any], spec) -> dict[str, Any]:
        import torch

        from .layers import block_list, renumber_layers, set_depth_in_config

        parent, attr, blocks = block_list(task.model)
        depth, keep = len(blocks), params["keep"]
        if keep >= depth:
            raise TechniqueError(f"layer-drop keep={keep} but the model has only {depth} blocks")
        chosen = sorted({round(i * (depth - 1) / max(keep - 1, 1)) for i in range(keep)})
        setattr(parent, attr, torch.nn.ModuleList(blocks[i] for i in chosen))
        renumber_layers(getattr(parent, attr))
        set_depth_in_config(task.model, keep)
        return {"blocks_before": depth, "kept": chosen}


class LowRank(Technique):
    name = "low-rank"
    group = "model structure"
    description = "SVD factorisation of linear layers into two thin ones"
    params = (
        Param("rank", int, 0, "fixed rank (0: choose by energy)", low=0, high=65536),
        Param("energy", float, 0.9, "fraction of squared singular values kept",
              low=0.01, high=1.0),
    )
    order = 30

    def apply_model(self, task, params: dict[str, Any], spec) -> dict[str, Any]:
        from .layers import conv1d_to_linear, linear_layers

        model = task.model
        conv1d_to_linear(model)
        before = after = factored = 0
        for name, linear in linear_layers(model):
            weights = linear.weight.numel()
            before += weights
            replacement = _factorised(linear, params["rank"], params["energy"])
            if replacement is None:
                after += weights
                continue
            factored += 1
            after += sum(m.weight.numel() for m in replacement)
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, replacement)
        return {"layers_factorised": factored, "linear_weights_before": before,
                "linear_weights_after": after}


def _factorised(linear, rank: int, energy: float):
    """``Sequential(in → r, r → out)`` from the SVD, or None when it would not be smaller."""
    import torch
    from torch import nn

    weight = linear.weight.detach().float()
    out_f, in_f = weight.shape
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    if rank == 0:
        cumulative = (s**2).cumsum(0) / (s**2).sum()
        rank = int((cumulative < energy).sum()) + 1
    rank = min(rank, len(s))
    if rank * (in_f + out_f) >= in_f * out_f:
        return None
    dtype, device = linear.weight.dtype, linear.weight.device
    down = nn.Linear(in_f, rank, bias=False, dtype=dtype, device=device)
    up = nn.Linear(rank, out_f, bias=linear.bias is not None, dtype=dtype, device=device)
    root = s[:rank].sqrt()
    with torch.no_grad():
        down.weight.copy_(root[:, None] * vh[:rank])
        up.weight.copy_(u[:, :rank] * root[None, :])
        if linear.bias is not None:
            up.bias.copy_(linear.bias)
    return nn.Sequential(down, up)


class ShareLayers(Technique):
    name = "share-layers"
    group = "model structure"
    description = "cross-layer weight sharing: each group of blocks runs one block's weights"
    modes = frozenset({"train", "infer"})  # a shared block would index one KV-cache slot
    params = (Param("group", int, 2, "consecutive blocks that share weights", low=2, high=1024),)
    order = 10

    def refusal_for_model(self, params, facts, spec) -> str | None:
        if facts.layers is not None and params["group"] > facts.layers:
            return f"group={params['group']} but {spec.model} has only {facts.layers} blocks"
        return None

    def apply_model(self, task, params: dict[str, Any], spec) -> dict[str, Any]:
        from .layers import block_list

        _, _, blocks = block_list(task.model)
        group = params["group"]
        if group > len(blocks):
            raise TechniqueError(f"share-layers group={group} but the model has only "
                                 f"{len(blocks)} blocks")
        for i in range(len(blocks)):
            if i % group:
                blocks[i] = blocks[i - i % group]
        unique = len({id(b) for b in blocks})
        return {"blocks": len(blocks), "unique_blocks": unique}
