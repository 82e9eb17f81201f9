"""Memory categories: what a tensor's bytes are for. Shared by the worker and the GUI."""

from __future__ import annotations

CATEGORIES: tuple[str, ...] = (
    "parameter",           # trainable parameters
    "parameter_frozen",    # parameters with requires_grad=False
    "buffer",
    "gradient",
    "optimizer_state",
    "activation",          # saved by autograd for backward
    "temporary",
    "input",
    "kv_cache",
    "quantization_state",
    "other",
)
CODE = {name: i for i, name in enumerate(CATEGORIES)}

LABELS = {
    "parameter": "parameters (trainable)",
    "parameter_frozen": "parameters (frozen)",
    "buffer": "buffers",
    "gradient": "gradients",
    "optimizer_state": "optimizer state",
    "activation": "activations (saved for backward)",
    "temporary": "temporaries",
    "input": "inputs",
    "kv_cache": "KV cache",
    "quantization_state": "quantization state",
    "other": "other",
}

COLOURS = {
    "parameter": "#4c72b0",
    "parameter_frozen": "#8da0cb",
    "buffer": "#64b5cd",
    "gradient": "#dd8452",
    "optimizer_state": "#c44e52",
    "activation": "#55a868",
    "temporary": "#ccb974",
    "input": "#8172b3",
    "kv_cache": "#937860",
    "quantization_state": "#da8bc3",
    "other": "#8c8c8c",
}

SAMPLE_PREFIX = "cat_"
TRACK_LEVELS = ("samples", "tensors", "tensors+stacks")
