"""The caches generation keeps (attention keys and values, state-space and convolution
states), found in any of transformers' cache objects and tagged ``kv_cache`` as each
block writes them, not only once the whole forward has returned.

Tagging at the forward's end left a prefill's freshly made cache counted as
temporaries at the peak it makes. Each block of the model (an element of one of its
``ModuleList``s) gets a post-hook that reads the cache it was handed (``cache``,
``past_key_values``, ``cache_params`` or ``layer_past``) and tags what it holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

CACHE_KWARGS = ("cache", "past_key_values", "past_key_value", "cache_params", "layer_past")


def cache_tensors(cache: Any, depth: int = 4) -> Iterator[torch.Tensor]:
    """Every tensor a cache holds: a transformers Cache (its layers, an encoder-decoder's
    two caches, a linear-attention layer's state dicts) or legacy nested tuples."""
    if isinstance(cache, torch.Tensor):
        yield cache
    elif depth <= 0 or cache is None or isinstance(cache, str | int | float | bool):
        return
    elif isinstance(cache, list | tuple):
        for item in cache:
            yield from cache_tensors(item, depth - 1)
    elif isinstance(cache, dict):
        for item in cache.values():
            yield from cache_tensors(item, depth - 1)
    elif type(cache).__module__.startswith("transformers."):
        for item in vars(cache).values():
            yield from cache_tensors(item, depth - 1)


def output_cache(output: Any) -> Any:
    """The cache a model's output carries, if any."""
    for name in ("cache", "past_key_values", "cache_params"):
        found = getattr(output, name, None)
        if found is not None:
            return found
    return None


class CacheTagger:
    """While attached, each block's cache writes are tagged ``kv_cache`` (under no_grad
    only: in training the same keys and values are activations saved for backward)."""

    def __init__(self, tracker) -> None:
        self.tracker = tracker
        self._handles: list = []

    def attach(self, model: nn.Module) -> CacheTagger:
        blocks = {id(m): m for lst in model.modules() if isinstance(lst, nn.ModuleList)
                  for m in lst}
        self._handles = [block.register_forward_hook(self._after_block, with_kwargs=True)
                         for block in blocks.values()]
        # and the model's own output, for a cache no block was handed as an argument
        self._handles.append(model.register_forward_hook(self._after_model))
        return self

    def _after_block(self, _module, args, kwargs, _output) -> None:
        if torch.is_grad_enabled():
            return
        cache = next((kwargs[n] for n in CACHE_KWARGS if kwargs.get(n) is not None), None)
        if cache is None:  # handed positionally (GPT-2's blocks)
            cache = next((a for a in args if type(a).__name__.endswith("Cache")), None)
        if cache is not None:
            self.tracker.tag(cache_tensors(cache), "kv_cache")

    def _after_model(self, _module, _args, output) -> None:
        cache = output_cache(output)
        if cache is not None and not torch.is_grad_enabled():
            self.tracker.tag(cache_tensors(cache), "kv_cache")

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
