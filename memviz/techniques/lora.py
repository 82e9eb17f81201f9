"""``lora``: train small low-rank adapters on a frozen base (peft)."""

from __future__ import annotations

from typing import Any

from .base import Param, Technique


class Lora(Technique):
    name = "lora"
    group = "training strategy"
    description = "LoRA adapters (peft): the base is frozen, only rank-r updates train"
    modes = frozenset({"train"})
    params = (
        Param("r", int, 8, "adapter rank", low=1, high=4096),
        Param("alpha", int, 16, "scaling numerator (scale = alpha / r)", low=1, high=65536),
        Param("targets", str, "all-linear",
              "module names to adapt, '+'-separated, or all-linear (every linear but the head)"),
    )
    order = 60  # after quantization: adapters sit on the quantized base

    def libraries(self, params: dict[str, Any]) -> tuple[str, ...]:
        return ("peft",)

    def apply_model(self, task, params: dict[str, Any], spec) -> dict[str, Any]:
        from peft import LoraConfig, get_peft_model

        from .base import TechniqueError

        model = task.model
        if params["targets"] == "all-linear":
            targets = sorted({name.rpartition(".")[2] for name, _ in _adaptable(model)})
            head = _head_name(model)
            targets = [t for t in targets if t != head]
        else:
            targets = [t for t in params["targets"].split("+") if t]
        if not targets:
            raise TechniqueError("lora found no linear layers to adapt in this model")
        config = LoraConfig(r=params["r"], lora_alpha=params["alpha"], lora_dropout=0.0,
                            target_modules=targets, bias="none")
        try:
            task.model = get_peft_model(model, config)
        except ValueError as exc:
            raise TechniqueError(f"lora: {exc}") from None
        trainable = sum(p.numel() for p in task.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in task.model.parameters())
        return {"targets": targets, "trainable_parameters": trainable,
                "total_parameters": total}


def _adaptable(model):
    """Linear layers and GPT-2's Conv1D projections (peft adapts both). A model with a
    Conv1D has loaded the module that defines it; one without needs no import of
    transformers (seconds, for a program that never uses it)."""
    import sys

    from torch import nn

    kinds: tuple[type, ...] = (nn.Linear,)
    conv1d = getattr(sys.modules.get("transformers.pytorch_utils"), "Conv1D", None)
    if conv1d is not None:
        kinds = (nn.Linear, conv1d)
    return [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)]


def _head_name(model) -> str | None:
    get = getattr(model, "get_output_embeddings", None)
    head = get() if get else None
    if head is None:
        return "head" if hasattr(model, "head") else None
    for name, module in model.named_modules():
        if module is head:
            return name.rpartition(".")[2]
    return None
