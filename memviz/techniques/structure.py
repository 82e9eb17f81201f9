"""What a loaded model's structure allows, for the window and ``memviz techniques --model``.

Worker side (torch): computed when a model loads and sent with its summary, so the
window can say which techniques apply to that model (LoRA's targets found, whether
checkpointing can wrap blocks) without loading it itself (``model_notes``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import TechniqueError


def structure_of(model: nn.Module) -> dict[str, Any]:
    from .layers import block_list
    from .lora import _adaptable, _head_name

    try:
        _, attr, blocks = block_list(model)
        depth, stack = len(blocks), attr
    except TechniqueError:
        depth, stack = None, None
    head = _head_name(model)
    targets = sorted({name.rpartition(".")[2] for name, _ in _adaptable(model)} - {head})
    base = getattr(model, "get_base_model", lambda: model)()
    return {
        "blocks": depth,
        "block_stack": stack,
        "lora_targets": targets,
        "checkpointing": "transformers" if getattr(base, "supports_gradient_checkpointing", False)
        else ("torch.utils.checkpoint" if depth else None),
        "generates": hasattr(model, "generate") and callable(model.generate),
        "encoder_decoder": bool(getattr(getattr(model, "config", None), "is_encoder_decoder",
                                        False)),
    }
