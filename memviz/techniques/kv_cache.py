"""``kv-cache``: how generation keeps past keys and values (transformers' caches).

``dynamic`` grows with every token; ``static`` is allocated once for the
longest sequence; ``quantized`` keeps keys and values in ``bits`` bits
(transformers' QuantizedCache over optimum-quanto, which builds a C++
extension on its first use).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .base import Param, Technique


class KvCache(Technique):
    name = "kv-cache"
    group = "deployment"
    description = "KV cache for generation: dynamic, static or quantized (transformers)"
    modes = frozenset({"generate"})
    params = (
        Param("kind", str, "dynamic", "cache implementation",
              choices=("dynamic", "static", "quantized")),
        Param("bits", int, 4, "bits per value for the quantized cache", choices=(2, 4)),
    )

    def refusal(self, spec, params, names) -> str | None:
        if params["kind"] == "quantized" and importlib.util.find_spec("optimum") is None:
            return ("the quantized cache needs optimum-quanto (pip install optimum-quanto), "
                    "which is not installed")
        return None

    def generate_kwargs(self, params: dict[str, Any]) -> dict[str, Any]:
        if params["kind"] == "quantized":
            return {"cache_implementation": "quantized",
                    "cache_config": {"backend": "quanto", "nbits": params["bits"]}}
        return {"cache_implementation": params["kind"]}
