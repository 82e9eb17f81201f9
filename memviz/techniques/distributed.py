"""``zero`` and ``fsdp``: optimizer state, gradients and weights sharded over ranks.

One worker process per rank over torch.distributed (gloo on CPU, nccl on
CUDA). ``zero`` wraps the optimizer in ``ZeroRedundancyOptimizer`` (each rank
keeps the state of its own share of the parameters) with gradients
all-reduced between ranks; ``fsdp`` shards parameters, gradients and state
with ``torch.distributed.fsdp.fully_shard``. Each rank's batch is
``batch_size / world_size`` rows, so the global batch is the one asked for.
"""

from __future__ import annotations

from .base import Param, Technique


class _Sharded(Technique):
    group = "training strategy"
    modes = frozenset({"train"})
    params = (Param("world_size", int, 2, "number of ranks (worker processes)", low=1, high=64),)
    order = 95  # last: wraps the finished model

    def refusal(self, spec, params, names) -> str | None:
        n = params["world_size"]
        if n < 2:
            return "sharding over one rank changes nothing: world_size must be at least 2"
        if spec.batch_size % n:
            return f"batch size {spec.batch_size} does not split evenly over {n} ranks"
        return None


class Zero(_Sharded):
    name = "zero"
    description = "ZeRO-1: optimizer state sharded over ranks (ZeroRedundancyOptimizer)"
    conflicts = frozenset({"fsdp"})


class Fsdp(_Sharded):
    name = "fsdp"
    description = "FSDP2: parameters, gradients and optimizer state sharded (fully_shard)"
    conflicts = frozenset({"zero"})
