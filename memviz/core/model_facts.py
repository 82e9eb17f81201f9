"""What can be known of a model before it is built: its depth and its positions.

No torch: the window and the CLI check options against these before a worker
starts. Presets are described from the numbers their builders use; a Hugging
Face directory from its ``config.json`` (the usual key names of every family);
a factory is unknown until it runs, and the worker checks it then.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFacts:
    layers: int | None = None  # blocks in the stack layer techniques change
    max_positions: int | None = None  # the longest sequence its position table holds


PRESET_FACTS = {
    "gpt2-tiny": ModelFacts(4, 1024),
    "llama-tiny": ModelFacts(4, None),  # rotary positions: no table to run past
    "bert-tiny": ModelFacts(4, 1024),
    "lstm-lm": ModelFacts(None, None),
    "conv-lm": ModelFacts(6, None),
    "minilm-l6": ModelFacts(6, 512),
}
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len")
CONFIG_LIMIT = 1 << 20  # a config.json is a few KiB; a larger one is not read here


def facts_of(model: str) -> ModelFacts:
    """What is known of ``model`` (nothing, for a factory or an unreadable config)."""
    if model in PRESET_FACTS:
        return PRESET_FACTS[model]
    path = os.path.join(os.path.expanduser(model), "config.json")
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > CONFIG_LIMIT:
            return ModelFacts()
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError, RecursionError):
        return ModelFacts()  # the worker says what is wrong with it
    if not isinstance(config, dict):
        return ModelFacts()
    return ModelFacts(_first_int(config, _LAYER_KEYS), _positions(config))


def _first_int(config: dict, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _positions(config: dict) -> int | None:
    # rotary models (Llama, Mistral, Qwen2...) have no position table: their
    # max_position_embeddings is a training length, not a limit on what runs
    if any(config.get(k) is not None for k in ("rope_theta", "rope_scaling",
                                                  "rope_parameters")) or \
            config.get("position_embedding_type") == "rotary":
        return None
    return _first_int(config, _POSITION_KEYS)
