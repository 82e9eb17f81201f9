"""``prune``: magnitude pruning, with storage that really shrinks where it can.

Zeros in a dense matrix save nothing, and ``torch.nn.utils.prune``'s masks
add memory (``weight_orig`` plus a mask). So:
- default (training): ``torch.nn.utils.prune.l1_unstructured`` with its masks
  kept, to show what pruning-aware training really costs;
- ``sparse=true`` (inference, generation): the pruned weights are stored as
  CSR with int32 indices (8 bytes per kept weight: a saving only above 50 %
  sparsity), or with ``block=b`` as BSR after pruning whole b×b blocks by
  their L1 norm (indices per block, so the bytes fall almost with ``amount``);
- ``structured=true``: whole hidden units of each block's MLP are removed by
  L2 norm and the matrices rebuilt smaller: a real saving everywhere.
Every report gives the linear weight bytes before and after.
"""

from __future__ import annotations

from typing import Any

from .base import Param, Technique, TechniqueError

# (input projections, output projection) of a block's MLP, per architecture
MLP_LAYOUTS = (
    (("mlp.c_fc",), "mlp.c_proj"),                       # GPT-2 (after Conv1D → Linear)
    (("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj"),  # Llama, Mistral, Qwen
    (("intermediate.dense",), "output.dense"),            # BERT
    (("mlp.fc1",), "mlp.fc2"),                            # OPT-like, Phi
)


class Prune(Technique):
    name = "prune"
    group = "model structure"
    description = "magnitude pruning; sparse (CSR/BSR) or structurally smaller weights"
    params = (
        Param("amount", float, 0.5, "fraction of weights (or MLP units) removed",
              low=0.01, high=0.99),
        Param("structured", bool, False, "remove whole MLP units and shrink the matrices"),
        Param("sparse", bool, False, "store pruned weights sparsely (inference only)"),
        Param("block", int, 1, "with sparse: prune and store b×b blocks (BSR)", low=1, high=64),
    )
    conflicts = frozenset({"quantize", "low-rank", "lora"})
    order = 20

    def refusal(self, spec, params, names) -> str | None:
        if params["sparse"] and params["structured"]:
            return "structured pruning already shrinks the matrices: sparse adds nothing"
        if params["sparse"] and spec.mode == "train":
            return ("sparse weights cannot be trained by torch's optimizers; train with masks "
                    "(the default) or structured=true, store sparsely for inference")
        if params["block"] > 1 and not params["sparse"]:
            return "block only applies with sparse=true"
        return None

    def apply_model(self, task, params: dict[str, Any], spec) -> dict[str, Any]:
        from .layers import conv1d_to_linear, linear_layers

        model = task.model
        conv1d_to_linear(model)
        layers = linear_layers(model)
        before = _weight_bytes(m for _, m in layers)
        amount = params["amount"]
        if params["structured"]:
            units = _prune_mlp_units(model, amount)
            after = _weight_bytes(m for _, m in linear_layers(model))
            return {"kind": "structured", "mlp_units_removed": units,
                    "linear_weight_bytes_before": before, "linear_weight_bytes_after": after}
        if params["sparse"]:
            after = sum(_to_sparse(m, amount, params["block"]) for _, m in layers)
            return {"kind": "sparse-bsr" if params["block"] > 1 else "sparse-csr",
                    "linear_weight_bytes_before": before, "linear_weight_bytes_after": after}
        import torch.nn.utils.prune as torch_prune

        for _, module in layers:
            torch_prune.l1_unstructured(module, "weight", amount=amount)
        after = sum(_weight_bytes([m]) + m.weight_mask.numel() * m.weight_mask.element_size()
                    for _, m in layers)
        return {"kind": "masks", "linear_weight_bytes_before": before,
                "linear_weight_bytes_after": after,
                "note": "masks keep weight_orig and a mask: pruning this way adds memory"}


def _weight_bytes(modules) -> int:
    from ..tracking.components import dense_parts

    total = 0
    for m in modules:
        weight = getattr(m, "weight_orig", m.weight)
        total += sum(t.numel() * t.element_size() for t, _ in dense_parts(weight))
    return total


def _to_sparse(module, amount: float, block: int) -> int:
    """Prune ``module.weight`` by magnitude and store it sparsely; its new bytes."""
    import torch

    from ..tracking.components import dense_parts

    weight = module.weight.detach()
    with torch.no_grad():
        if block == 1:
            keep = weight.abs() > weight.abs().flatten().kthvalue(
                max(1, int(amount * weight.numel()))).values
            csr = (weight * keep).to_sparse_csr()
            sparse = torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(),
                                             csr.values(), csr.shape)
        else:
            rows, cols = weight.shape
            if rows % block or cols % block:
                return _weight_bytes([module])  # left dense: its shape does not tile
            norms = weight.abs().reshape(rows // block, block, cols // block, block).sum((1, 3))
            cut = norms.flatten().kthvalue(max(1, int(amount * norms.numel()))).values
            mask = (norms > cut).repeat_interleave(block, 0).repeat_interleave(block, 1)
            sparse = (weight * mask).to_sparse_bsr((block, block))
    module.weight = torch.nn.Parameter(sparse, requires_grad=False)
    return sum(t.numel() * t.element_size() for t, _ in dense_parts(sparse))


def _prune_mlp_units(model, amount: float) -> int:
    """Remove the weakest ``amount`` of each MLP's hidden units; units removed in all."""
    from .layers import block_list

    _, _, blocks = block_list(model)
    removed = 0
    for block in blocks:
        found = _mlp_of(block)
        if found is None:
            raise TechniqueError(f"structured pruning knows no MLP layout in "
                                 f"{type(block).__name__}; its MLPs are one of "
                                 + ", ".join(f"{'+'.join(i)} → {o}" for i, o in MLP_LAYOUTS))
        inputs, output = found
        removed += _shrink(block, inputs, output, amount)
    return removed


def _mlp_of(block):
    for inputs, output in MLP_LAYOUTS:
        try:
            [block.get_submodule(n) for n in (*inputs, output)]
        except AttributeError:
            continue
        return inputs, output
    return None


def _shrink(block, inputs: tuple[str, ...], output: str, amount: float) -> int:
    import torch
    from torch import nn

    ins = [block.get_submodule(n) for n in inputs]
    out = block.get_submodule(output)
    hidden = ins[0].out_features
    keep_n = max(1, round(hidden * (1 - amount)))
    score = sum(m.weight.detach().float().norm(dim=1) for m in ins)
    score = score + out.weight.detach().float().norm(dim=0)
    keep = score.topk(keep_n).indices.sort().values
    with torch.no_grad():
        for name, m in zip(inputs, ins, strict=True):
            _set(block, name, _linear_rows(m, keep))
        smaller = nn.Linear(keep_n, out.out_features, bias=out.bias is not None,
                            device=out.weight.device, dtype=out.weight.dtype)
        smaller.weight.copy_(out.weight[:, keep])
        if out.bias is not None:
            smaller.bias.copy_(out.bias)
        _set(block, output, smaller)
    return hidden - keep_n


def _linear_rows(m, rows):
    from torch import nn

    smaller = nn.Linear(m.in_features, len(rows), bias=m.bias is not None,
                        device=m.weight.device, dtype=m.weight.dtype)
    smaller.weight.copy_(m.weight[rows])
    if m.bias is not None:
        smaller.bias.copy_(m.bias[rows])
    return smaller


def _set(root, dotted: str, module) -> None:
    parent, _, attr = dotted.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, module)
