"""Predict a run's tracked peak and each category before it runs.

Parameters, gradients and optimizer state are counted from the parameter
shapes (exact on the presets: the same shapes the model is built with).
Activations follow the per-layer form of the known transformer formulas
(Korthikanti et al. 2022): per block, ``b·s·(c_h·h + c_i·i)`` elements saved
for backward, plus ``b·heads·s²·c_a`` bytes where dropout keeps the attention
scores, plus the head's ``b·s·c_v·V``. The coefficients count what each
family's eager implementation saves (GELU's tanh form keeps five
intermediate-wide tensors, SwiGLU four, dropout a one-byte mask) and are
checked against the tracker on the presets (``python -m benchmarks.estimate``).

The training peak is the larger of two moments: the end of the forward
(parameters, optimizer state, every saved activation and the head's
temporaries) and the optimizer step (parameters, gradients, state and the
update's temporaries). Inference peaks inside the largest layer's transient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from ..core.spec import RunSpec
from ..techniques.registry import resolve
from .architecture import Architecture, EstimateError, Linear, architecture_of

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
STEP_COUNTER_BYTES = 4  # AdamW's per-parameter ``step`` is a float32 scalar tensor
BNB_MIN_8BIT, BNB_BLOCK = 4096, 256  # bitsandbytes: smaller tensors keep fp32 state
AO_MIN_4BIT, AO_BLOCK = 4096, 128  # torchao AdamW4bit


@dataclass(frozen=True)
class Coefficients:
    layer_h: float  # saved per block per token, × hidden (elements)
    layer_i: float  # saved per block per token, × intermediate (elements)
    score: float  # saved per block, bytes per head per s² (attention dropout)
    head_v: float  # saved once per token, × vocab
    forward_temp_v: float  # temporaries at the end of the forward, per token × vocab
    infer_h: float  # inference's largest transient per token, × hidden
    infer_i: float  # … × intermediate
    infer_v: float  # the head's transient per token, × vocab


COEFFICIENTS = {
    # GPT-2: LN, c_attn in/out (qkv), merged heads, c_proj in, LN, c_fc in, dropout masks;
    # gelu_new (tanh form) keeps five intermediate-wide tensors, c_proj's input one more
    "gpt2": Coefficients(layer_h=10.25, layer_i=5.0, score=12.0, head_v=3.0,
                         forward_temp_v=13.25, infer_h=1.25, infer_i=7.0, infer_v=3.0),
    # Llama: RMSNorm in/out ×2, q/k/v/o inputs and rotary outputs; SwiGLU keeps gate,
    # up, silu(gate) and their product; SDPA keeps no scores (no attention dropout)
    "llama": Coefficients(layer_h=9.6, layer_i=4.0, score=0.0, head_v=3.0,
                          forward_temp_v=9.06, infer_h=5.4, infer_i=4.0, infer_v=3.0),
    # BERT: the MLM head keeps one vocabulary-wide tensor (log-softmax) per token
    "bert": Coefficients(layer_h=10.0, layer_i=2.0, score=12.0, head_v=1.0,
                         forward_temp_v=2.0, infer_h=2.0, infer_i=2.25, infer_v=2.0),
    # LSTM: four gates, cell and hidden state per step; one block holds both layers
    "lstm": Coefficients(layer_h=33.1, layer_i=0.0, score=0.0, head_v=3.0,
                         forward_temp_v=4.0, infer_h=2.9, infer_i=0.0, infer_v=2.0),
    # gated convolution: conv output (2C), GLU output, norm in/out
    "conv": Coefficients(layer_h=3.9, layer_i=0.0, score=0.0, head_v=3.0,
                         forward_temp_v=2.0, infer_h=4.0, infer_i=0.0, infer_v=2.0),
}


@dataclass
class Estimate:
    """Bytes per category at the predicted peak, the peak, and what was assumed."""

    peak_bytes: int
    by_category: dict[str, int]
    moment: str  # "forward end", "optimizer step", "inference", "generation"
    notes: list[str] = field(default_factory=list)
    per_rank: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"peak_bytes": self.peak_bytes, "by_category": dict(self.by_category),
                "moment": self.moment, "notes": list(self.notes), "per_rank": self.per_rank}


@dataclass
class _Model:
    """The model after the techniques that change it, as byte counts."""

    arch: Architecture
    layers: int  # blocks that run (activations)
    stored_layers: int  # blocks whose weights are stored (share-layers stores fewer)
    weight_bytes: int  # parameter element size
    act_bytes: float  # activation element size
    head_bytes: int  # the logits' and loss's element size (fp32 under autocast)
    intermediate: int
    trainable_shapes: list[tuple[int, ...]]
    frozen_bytes: int = 0
    quant_state: int = 0
    mask_bytes: int = 0  # pruning masks (buffers)
    notes: list[str] = field(default_factory=list)


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _shape_model(arch: Architecture, used: dict[str, dict]) -> _Model:
    """Apply the structural techniques to the architecture's shapes."""
    notes: list[str] = []
    weight = BYTES[used.get("low-precision", {}).get("dtype", "fp32")]
    act = float(weight)
    head = weight
    if "amp" in used:
        act, head = 4 * 0.66, 4  # autocast: matmuls in bf16; norms, softmax, loss in fp32
        notes.append("amp: activations at 0.66× fp32 (matmuls bf16, norms/softmax fp32)")
    layers = arch.layers
    if "layer-drop" in used:
        layers = min(int(used["layer-drop"]["keep"]), arch.layers)
    stored = layers
    if "share-layers" in used:
        stored = math.ceil(layers / int(used["share-layers"]["group"]))
    linears = list(arch.block_linears)
    intermediate = arch.intermediate
    if "prune" in used and used["prune"].get("structured"):
        keep = 1.0 - float(used["prune"]["amount"])
        intermediate = max(1, round(arch.intermediate * keep)) if arch.intermediate else 0
        n_mlp = arch.mlp_linears
        mlp = linears[-n_mlp:]
        linears = linears[:-n_mlp] + [
            Linear(lin.inputs, intermediate, lin.bias) if lin.outputs == arch.intermediate
            else Linear(intermediate, lin.outputs, lin.bias) for lin in mlp]
    if "low-rank" in used:
        rank = int(used["low-rank"].get("rank") or 0)
        if not rank:
            notes.append("low-rank by energy: the rank depends on the weights; predicted "
                         "at full rank (no saving)")
        factored = []
        for lin in linears:
            r = rank or min(lin.inputs, lin.outputs)
            if r * (lin.inputs + lin.outputs) < lin.weights:
                factored += [Linear(lin.inputs, r, False), Linear(r, lin.outputs, lin.bias)]
            else:
                factored.append(lin)
        linears = factored
    block = replace(arch, block_linears=tuple(linears))
    shapes = block.shapes(stored)
    if "prune" in used and not used["prune"].get("structured"):
        if used["prune"].get("sparse"):
            notes.append("sparse pruning: only inference stores CSR/BSR; predicted dense")
        else:  # torch.nn.utils.prune keeps weight_orig and a mask of the same size
            mask = sum(lin.weights for lin in linears) * stored * weight
            notes.append("prune masks: a mask per pruned weight, as large as the weight")
            model = _Model(arch, layers, stored, weight, act, head, intermediate, shapes,
                           notes=notes)
            model.mask_bytes = mask
            return model
    return _Model(arch, layers, stored, weight, act, head, intermediate, shapes, notes=notes)


def _apply_lora_and_quantize(model: _Model, used: dict[str, dict]) -> None:
    """LoRA freezes the base and adds rank-r adapters; quantize stores the frozen base
    linears in int8 (one byte a weight, one fp32 scale per output row)."""
    if "lora" not in used:
        return
    r = int(used["lora"]["r"])
    block_linears = model.arch.block_linears
    adapters = [(r, lin.inputs) for lin in block_linears] + [
        (lin.outputs, r) for lin in block_linears]
    base = sum(_numel(s) for s in model.trainable_shapes) * model.weight_bytes
    model.trainable_shapes = adapters * model.stored_layers
    model.frozen_bytes += base
    if "quantize" in used:
        weights = sum(lin.weights for lin in block_linears) * model.stored_layers
        scales = sum(lin.outputs for lin in block_linears) * model.stored_layers * 4
        model.frozen_bytes -= weights * model.weight_bytes - weights
        model.quant_state = scales
        model.frozen_bytes -= scales  # the scales are their own category


def _optimizer_state(shapes: list[tuple[int, ...]], optimizer: str, elem: int) -> int:
    n = sum(_numel(s) for s in shapes)
    if optimizer == "sgd":
        return 0
    if optimizer == "sgd-momentum":
        return n * elem
    if optimizer == "adamw":
        return 2 * n * elem + STEP_COUNTER_BYTES * len(shapes)
    if optimizer == "adafactor":  # factored second moment for ≥2-D tensors, no first moment
        total = 4 * len(shapes)  # and each tensor's RMS, a float32 scalar tensor
        for s in shapes:
            if len(s) >= 2:
                total += (_numel(s[:-1]) + _numel(s[:-2] + s[-1:])) * elem
            else:
                total += _numel(s) * elem
        return total
    if optimizer == "adamw-8bit":
        total = 0
        for s in shapes:
            k = _numel(s)
            total += (2 * k + 2 * 4 * math.ceil(k / BNB_BLOCK)) if k >= BNB_MIN_8BIT \
                else 2 * k * 4
        return total
    if optimizer == "adamw-4bit":
        total = 0
        for s in shapes:
            k = _numel(s)
            total += (k + 2 * 4 * math.ceil(k / AO_BLOCK)) if k >= AO_MIN_4BIT else 2 * k * 4
        return total
    raise EstimateError(f"no estimate for optimizer {optimizer!r}")


def _activations(model: _Model, c: Coefficients, b: int, s: int) -> float:
    arch = model.arch
    per_block = b * s * (c.layer_h * arch.hidden + c.layer_i * model.intermediate) \
        * model.act_bytes
    if arch.attention_dropout:
        per_block += b * arch.heads * s * s * c.score
    return model.layers * per_block + _head(model, c, b, s)


def _head(model: _Model, c: Coefficients, b: int, s: int) -> float:
    """What the LM head and the loss keep for backward."""
    return b * s * c.head_v * model.arch.vocab * model.head_bytes


def predict(spec: RunSpec, arch: Architecture | None = None) -> Estimate:
    """The predicted tracked peak of ``spec`` and its categories (per rank when sharded)."""
    arch = arch or architecture_of(spec.model)
    c = COEFFICIENTS[arch.family]
    used = {technique.name: params for technique, params in map(resolve, spec.techniques)}
    model = _shape_model(arch, used)
    _apply_lora_and_quantize(model, used)
    world = int(used.get("zero", used.get("fsdp", {})).get("world_size", 1))
    b = max(1, spec.batch_size // world)
    if "grad-accum" in used and spec.mode == "train":
        b = max(1, b // int(used["grad-accum"]["micro_batches"]))
    s = spec.seq_len
    trainable = sum(_numel(x) for x in model.trainable_shapes) * model.weight_bytes
    cats = {"parameter": trainable, "parameter_frozen": model.frozen_bytes,
            "quantization_state": model.quant_state, "buffer": model.mask_bytes}
    notes = list(model.notes)
    if spec.mode == "train":
        return _train_peak(spec, model, c, b, s, trainable, cats, used, world, notes)
    if spec.mode == "generate" or spec.mode == "infer":
        cats = {"parameter": trainable + model.frozen_bytes, "parameter_frozen": 0}
        if "quantize" in used:  # the linear weights stored in one byte, a scale per row
            weights = sum(lin.weights for lin in arch.block_linears) * model.stored_layers
            rows = sum(lin.outputs for lin in arch.block_linears) * model.stored_layers
            cats["parameter"] -= weights * model.weight_bytes
            cats["parameter_frozen"] = weights
            cats["quantization_state"] = rows * 4
        transient = b * s * max(
            (c.infer_h * arch.hidden + c.infer_i * model.intermediate) * model.act_bytes,
            c.infer_v * arch.vocab * 4)
        cats["temporary"] = int(transient)
        moment = "inference"
        if spec.mode == "generate" and arch.heads:
            moment = "prefill"
            static = used.get("kv-cache", {}).get("kind") == "static"
            tokens = s + spec.max_new_tokens - (0 if static else 1)
            cache = int(2 * model.layers * b * tokens * arch.kv_heads * arch.head_dim
                        * model.weight_bytes)
            notes.append(f"KV cache at the end of generation: {cache} bytes")
            if static:  # allocated whole before the prefill
                cats["kv_cache"] = cache
        return _finish(cats, moment, notes, world > 1)
    raise EstimateError(f"no estimate for mode {spec.mode!r}")


def _train_peak(spec, model: _Model, c: Coefficients, b: int, s: int, trainable: int,
                cats: dict[str, int], used: dict[str, dict], world: int,
                notes: list[str]) -> Estimate:
    elem = model.weight_bytes
    shapes = model.trainable_shapes
    if "fsdp" in used:  # parameters, gradients and state sharded; one block gathered
        cats["parameter"] = trainable // world
        notes.append("fsdp: a rank holds 1/N of the parameters, plus one gathered block")
    state_elem = 4 if used.get("low-precision", {}).get("master_weights") else elem
    state = _optimizer_state(shapes, spec.optimizer, state_elem)
    if used.get("low-precision", {}).get("master_weights"):
        state += sum(_numel(x) for x in shapes) * 4  # the fp32 masters themselves
    if world > 1:
        state //= world
    cats["optimizer_state"] = state
    activations = _activations(model, c, b, s)
    backward_end = None
    if "checkpointing" in used:
        every = int(used["checkpointing"]["every"])
        kept = model.layers * b * s * model.arch.hidden * model.act_bytes
        blocks = activations - _head(model, c, b, s)
        kept_blocks = model.layers - model.layers // every
        activations = kept + blocks / max(model.layers, 1) * (1 + kept_blocks) + \
            _head(model, c, b, s)
    if "lora" in used:
        activations += model.layers * len(model.arch.block_linears) * b * s * \
            int(used["lora"]["r"]) * model.act_bytes
    grads = trainable // world if "fsdp" in used else trainable
    temporary = b * s * c.forward_temp_v * model.arch.vocab * model.head_bytes
    if "fsdp" in used:  # gathered weights kept for backward, and the block being gathered
        activations += trainable * (1 - 1 / world)
        temporary += 1.5 * model.arch.block_parameters * elem
    if "zero" in used:  # the updated shards are broadcast through full-size buffers
        temporary += trainable
    forward = dict(cats, activation=int(activations), temporary=int(temporary))
    if "grad-accum" in used and int(used["grad-accum"]["micro_batches"]) > 1:
        forward["gradient"] = grads  # the first micro-batches' gradients wait for the step
    update = dict(cats, gradient=grads, temporary=_update_temporaries(spec.optimizer, grads,
                                                                     shapes, elem))
    moments = [(forward, "forward end"), (update, "optimizer step")]
    if backward_end is not None:
        moments.append((backward_end, "backward end"))
    chosen, moment = max(moments, key=lambda m: sum(m[0].values()))
    return _finish(chosen, moment, notes, world > 1)


def _update_temporaries(optimizer: str, grads: int, shapes: list[tuple[int, ...]],
                        elem: int) -> int:
    """What the optimizer step allocates beside its state: torch's foreach AdamW about
    0.42× the gradients at once (measured); Adafactor works tensor by tensor (about 3×
    the largest); SGD and the low-bit kernels update in place."""
    if optimizer in ("adamw", "adamw-4bit"):
        return int(0.42 * grads)
    if optimizer == "adafactor":
        return 3 * max((_numel(s) for s in shapes), default=0) * elem
    return 0


def _finish(cats: dict[str, int], moment: str, notes: list[str], per_rank: bool) -> Estimate:
    cats = {k: int(v) for k, v in cats.items() if v}
    return Estimate(sum(cats.values()), cats, moment, notes, per_rank)
