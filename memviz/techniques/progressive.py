"""``progressive``: staged training that grows the model's depth.

Stage 1 trains the first ``depth / stages`` blocks; each later stage stacks
copies of the trained blocks on top (as in progressive stacking for BERT)
until the full depth is back. Steps are split evenly between stages; the
report lists each stage's first step and depth, so memory and loss per stage
read straight off the step table.
"""

from __future__ import annotations

import math
from typing import Any

from .base import Param, Technique, TechniqueError


class Progressive(Technique):
    name = "progressive"
    group = "model structure"
    description = "staged training: a shallow model first, grown by stacking trained blocks"
    modes = frozenset({"train"})
    params = (Param("stages", int, 2, "number of stages (depth grows at each)", low=2, high=16),)
    conflicts = frozenset({"layer-drop", "share-layers"})
    order = 10

    def refusal(self, spec, params, names) -> str | None:
        if spec.steps < params["stages"]:
            return f"{params['stages']} stages need at least as many steps, not {spec.steps}"
        return None

    def refusal_for_model(self, params, facts, spec) -> str | None:
        if facts.layers is not None and params["stages"] > facts.layers:
            return f"{params['stages']} stages but {spec.model} has only {facts.layers} blocks"
        return None

    def apply_model(self, task, params: dict[str, Any], spec) -> dict[str, Any]:
        import torch

        from .layers import block_list, renumber_layers, set_depth_in_config

        parent, attr, blocks = block_list(task.model)
        depth, stages = len(blocks), params["stages"]
        if stages > depth:
            raise TechniqueError(f"{stages} stages but the model has only {depth} blocks")
        plan = [{"stage": k + 1, "first_step": spec.steps * k // stages,
                 "depth": math.ceil(depth * (k + 1) / stages)} for k in range(stages)]
        setattr(parent, attr, torch.nn.ModuleList(list(blocks)[:plan[0]["depth"]]))
        renumber_layers(getattr(parent, attr))
        set_depth_in_config(task.model, plan[0]["depth"])
        return {"full_depth": depth, "stages": plan}

    def before_step(self, step, task, params, spec, report) -> bool:
        import copy

        from .layers import block_list, renumber_layers, set_depth_in_config

        stage = next((s for s in report["stages"][1:] if s["first_step"] == step), None)
        if stage is None:
            return False
        _, _, blocks = block_list(task.model)
        trained = len(blocks)
        for i in range(trained, stage["depth"]):
            blocks.append(copy.deepcopy(blocks[i % trained]))
        renumber_layers(blocks)
        set_depth_in_config(task.model, stage["depth"])
        return True
