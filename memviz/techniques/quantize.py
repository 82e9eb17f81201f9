"""``quantize``: int8 / int4 weights (torch's dynamic quantization, torchao).

- ``int8-dynamic``: ``torch.ao.quantization.quantize_dynamic`` (CPU, fbgemm):
  int8 weights packed into opaque objects, activations quantized per batch.
- ``int8-weight``: torchao ``Int8WeightOnlyConfig``: int8 weights with a
  per-row scale, dequantised on use (those temporaries can raise the peak
  while the resident weights shrink: both are reported).
- ``int4-weight``: torchao ``Int4WeightOnlyConfig`` on CUDA. Every torchao
  int4 layout fails on CPU, and the one that runs stores a byte per weight,
  so it is refused there rather than reported as a saving it is not.

Training needs ``lora`` on top: a quantized base stays frozen (QLoRA-style).
Only ``nn.Linear`` layers are quantized (GPT-2's ``Conv1D`` are converted
first); a head tied to the embedding is left alone, or it would be stored twice.
"""

from __future__ import annotations

from typing import Any

from .base import Param, Technique

METHODS = ("int8-dynamic", "int8-weight", "int4-weight")


class Quantize(Technique):
    name = "quantize"
    group = "deployment"
    description = "int8/int4 linear weights (torch dynamic quantization, torchao)"
    params = (Param("method", str, "int8-weight", "how to quantize", choices=METHODS),
              Param("group_size", int, 128, "int4 group size", low=32, high=256))
    conflicts = frozenset({"prune", "low-rank"})
    order = 40

    def libraries(self, params: dict[str, Any]) -> tuple[str, ...]:
        return () if params["method"] == "int8-dynamic" else ("torchao",)

    def refusal(self, spec, params, names) -> str | None:
        method, cpu = params["method"], spec.device == "cpu"
        if spec.mode == "train" and "lora" not in names:
            return ("quantized weights cannot be trained; add lora to train adapters on the "
                    "frozen quantized base (QLoRA-style)")
        if method == "int8-dynamic" and not cpu:
            return "int8-dynamic runs on CPU only (fbgemm kernels); use int8-weight on CUDA"
        if method == "int8-dynamic" and spec.mode == "train":
            return "int8-dynamic packs weights opaquely: LoRA cannot sit on it; use int8-weight"
        if method == "int4-weight" and cpu:
            return ("int4-weight needs CUDA: torchao's int4 layouts fail on CPU, and the CPU "
                    "layout that runs stores one byte per weight (no saving over int8)")
        return None

    def apply_model(self, task, params: dict[str, Any], spec) -> dict[str, Any]:
        from .layers import conv1d_to_linear, linear_layers

        model = task.model
        converted = conv1d_to_linear(model)
        layers = linear_layers(model)
        before = sum(m.weight.numel() * m.weight.element_size() for _, m in layers)
        names = {name for name, _ in layers}
        method = params["method"]
        if method == "int8-dynamic":
            after = _dynamic_int8(model, names)
        else:
            after = _torchao(model, names, method, params["group_size"])
        for p in model.parameters():
            p.requires_grad_(False)
        return {"method": method, "layers": len(layers), "conv1d_converted": converted,
                "linear_weight_bytes_before": before, "linear_weight_bytes_after": after}

    def opaque_bytes(self, task, params):
        """int8-dynamic's packed weights live in C++ objects no tensor op allocates."""
        if params["method"] != "int8-dynamic":
            return []
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        found = []
        for name, module in task.model.named_modules():
            if isinstance(module, DynamicLinear):
                weight, bias = module._weight_bias()
                found.append((weight.numel() * weight.element_size(), "parameter_frozen", name,
                              "×".join(map(str, weight.shape)) + " int8 (packed)"))
                if bias is not None:
                    found.append((bias.numel() * bias.element_size(), "parameter_frozen", name,
                                  "×".join(map(str, bias.shape)) + " bias (packed)"))
        return found


def _dynamic_int8(model, names: set[str]) -> int:
    """Quantize in place; the packed weights' bytes (torch hides them from the dispatcher)."""
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import quantize_dynamic

    quantize_dynamic(model, {name: torch.ao.quantization.default_dynamic_qconfig
                             for name in names}, dtype=torch.qint8, inplace=True)
    total = 0
    for module in model.modules():
        if isinstance(module, DynamicLinear):
            weight, _bias = module._weight_bias()
            total += weight.numel() * weight.element_size()
    return total


def _torchao(model, names: set[str], method: str, group_size: int) -> int:
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

    config = (Int8WeightOnlyConfig() if method == "int8-weight"
              else Int4WeightOnlyConfig(group_size=group_size))
    quantize_(model, config, filter_fn=lambda _m, fqn: fqn in names)
    from ..tracking.components import dense_parts

    total = 0
    for name, module in model.named_modules():
        if name in names:
            total += sum(t.numel() * t.element_size() for t, _ in dense_parts(module.weight))
    return total
