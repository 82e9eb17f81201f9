"""Mixture-of-experts routing: an assumption a simulation states, a choice a run can force.

Which experts a token goes to is data. A simulation has no data, so it assumes the
routing and says so; a measured run takes the model's own, or the same assumption
when asked (``routing``), so the two can be compared:

- ``balanced``: token-expert slot s (token t's j-th choice, s = t·k + j) goes to
  expert s mod E: every expert gets its share of the tokens × top-k;
- ``worst``: every token goes to the same k experts (0 .. k-1), the rest get none.

A given routing replaces the routers' choice before each experts module runs (one
index tensor a layer, as the router's own), in a measured run and a simulated one
alike; a simulation given none assumes ``balanced`` without replacing anything.
Transformers' default expert path
(``grouped_mm``) allocates the same bytes whatever the routing. Its ``eager`` path
allocates per expert by how many tokens it got; on fake tensors those counts cannot
be read, so the experts' forward runs a replica of that path's ops with the counts
the assumption gives.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..core.spec import RunSpec, SpecError

SIMULATED_DEFAULT = "balanced"


def experts_modules(model: nn.Module) -> list[nn.Module]:
    """The experts modules of transformers' mixtures of experts (any family whose
    experts take ``(hidden_states, top_k_index, top_k_weights)``)."""
    return [m for m in model.modules()
            if hasattr(m, "num_experts") and hasattr(m, "is_transposed")
            and hasattr(getattr(m, "config", None), "_experts_implementation")]


def tokens_per_expert(routing: str, tokens: int, top_k: int, experts: int) -> list[int]:
    if routing == "worst":
        return [tokens if e < top_k else 0 for e in range(experts)]
    slots = tokens * top_k
    return [slots // experts + (1 if e < slots % experts else 0) for e in range(experts)]


def apply(model: nn.Module, spec: RunSpec, simulated: bool) -> dict[str, Any] | None:
    """Force (or, simulated, assume) the routing on every experts module; what was
    assumed, for the summary. None for a model without experts."""
    modules = experts_modules(model)
    if not modules:
        return None
    routing = spec.routing or (SIMULATED_DEFAULT if simulated else "")
    paths = sorted({m.config._experts_implementation or "eager" for m in modules})
    for module in modules:
        if spec.routing:
            module.register_forward_pre_hook(_forcing(spec.routing))
        if (module.config._experts_implementation or "eager") == "eager":
            _check_replica_fits(module)
            module.forward = types.MethodType(_eager_on_fake_tensors(routing or SIMULATED_DEFAULT,
                                                                     module.forward), module)
    first = modules[0]
    return {"routing": routing or "the model's own", "assumed": simulated,
            "forced": bool(spec.routing),
            "experts": int(first.num_experts), "layers": len(modules),
            "expert_paths": paths}


def _forcing(routing: str):
    """A pre-hook handing the experts the assumed choice in place of the router's (a new
    tensor: the router's own is saved for its backward and may not be written)."""
    def force(module: nn.Module, args: tuple) -> tuple | None:
        if len(args) < 2 or not isinstance(args[1], torch.Tensor):
            return None
        chosen = args[1]
        with torch.no_grad():  # slot s = t·k + j
            forced = torch.arange(chosen.numel(), device=chosen.device).remainder_(
                module.num_experts if routing == "balanced" else chosen.shape[-1])
        return (args[0], forced.view_as(chosen), *args[2:])
    return force


def _check_replica_fits(module: nn.Module) -> None:
    """The replica is transformers' eager path for gated, concatenated experts."""
    if (not getattr(module, "has_gate", True) or getattr(module, "has_bias", False)
            or module.is_transposed or not getattr(module, "is_concatenated", True)
            or getattr(module, "has_post_expert_norm", False)):
        raise SpecError(f"{type(module).__name__}'s eager expert path is not one memviz can "
                        "simulate: use the model's default expert path")


def _one_hot_as_on_the_cpu(index: torch.Tensor, classes: int) -> torch.Tensor:
    """``F.one_hot`` as the CPU kernel runs it (on fake tensors torch takes another way,
    through a comparison with ``arange``): its range check's minimum and maximum, then
    zeros with ones scattered in."""
    index.aminmax()  # the kernel's check, whose values a simulation never reads
    out = torch.zeros((*index.shape, classes), dtype=index.dtype, device=index.device)
    return out.scatter_(-1, index.unsqueeze(-1), 1)


def _eager_on_fake_tensors(routing: str, measured_forward):
    """The experts' eager forward: as transformers has it on real tensors; on fake ones,
    the same ops with each expert's token count from ``routing`` where the eager path
    reads them from the routing's values (``nonzero``, ``where``)."""
    from torch._subclasses.fake_tensor import FakeTensor

    def forward(self, hidden_states, top_k_index, top_k_weights):
        if not isinstance(hidden_states, FakeTensor):
            return measured_forward(hidden_states, top_k_index, top_k_weights)
        counts = tokens_per_expert(routing, hidden_states.shape[0], top_k_index.shape[-1],
                                   self.num_experts)
        final_hidden_states = torch.zeros_like(hidden_states)
        with torch.no_grad():
            expert_mask = _one_hot_as_on_the_cpu(top_k_index, self.num_experts + 1)
            expert_mask = expert_mask.permute(2, 1, 0)
            hit = torch.greater(expert_mask.sum(dim=(-1, -2)), 0)
            # what nonzero() returns: a row for each expert that got a token
            expert_hit = hit.new_empty((sum(1 for n in counts if n), 1), dtype=torch.long)
        hit_experts = [e for e, n in enumerate(counts) if n]
        for row, expert_idx in zip(expert_hit, hit_experts, strict=True):
            _ = row[0] == self.num_experts  # the eager path's test for the sentinel expert
            # torch.where(mask): nonzero() as (count, 2), each column a view
            top_k_pos, token_idx = expert_mask.new_empty((counts[expert_idx], 2)).unbind(1)
            current_state = hidden_states[token_idx]
            gate, up = F.linear(current_state, self.gate_up_proj[expert_idx]).chunk(2, dim=-1)
            current_hidden_states = self.act_fn(gate) * up
            current_hidden_states = F.linear(current_hidden_states, self.down_proj[expert_idx])
            current_hidden_states = current_hidden_states * top_k_weights[token_idx, top_k_pos,
                                                                          None]
            final_hidden_states.index_add_(0, token_idx,
                                           current_hidden_states.to(final_hidden_states.dtype))
        return final_hidden_states

    return forward
