"""``checkpointing``: keep only block inputs, recompute the rest in backward.

Hugging Face models use their own ``activation_checkpointing_enable``; any
other model has every k-th block of its layer stack wrapped in
``torch.utils.checkpoint`` (non-reentrant).
"""

from __future__ import annotations

from typing import Any

from .base import Param, Technique


class Checkpointing(Technique):
    name = "checkpointing"
    group = "training strategy"
    description = "activation recomputation: keep block inputs, recompute the rest in backward"
    modes = frozenset({"train"})
    params = (Param("every", int, 1, "checkpoint every k-th block (1 = all)", low=1, high=64),)
    order = 90  # after every structural change

    def apply_model(self, task, params: dict[str, Any], spec) -> dict[str, Any]:
        from .layers import Checkpointed, block_list

        every = params["every"]
        model = task.model
        base = getattr(model, "get_base_model", lambda: model)()
        if getattr(base, "supports_gradient_checkpointing", False):
            base.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}, every_n_layers=every)
            if hasattr(base, "enable_input_require_grads") and not any(
                    p.requires_grad for p in base.get_input_embeddings().parameters()):
                base.enable_input_require_grads()  # frozen embeddings (LoRA) still checkpoint
            _, _, blocks = block_list(base)
            return {"via": "transformers", "blocks": len(blocks),
                    "checkpointed": len(range(0, len(blocks), every))}
        _, _, blocks = block_list(base)
        for i in range(0, len(blocks), every):
            blocks[i] = Checkpointed(blocks[i])
        return {"via": "torch.utils.checkpoint", "blocks": len(blocks),
                "checkpointed": len(range(0, len(blocks), every))}

