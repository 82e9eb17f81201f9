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

    def apply_model(self, task, params, spec):
        """Gradients are averaged over ranks by DDP, in buckets the gradients view."""
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [torch_device_index(spec.device)] if spec.device.startswith("cuda") else None
        if spec.simulate:
            _skip_value_checks_of_ddp()
        task.model = DistributedDataParallel(task.model, device_ids=device_ids,
                                             gradient_as_bucket_view=True)
        if spec.simulate:  # the fake group's all-reduce returns nothing: keep the bucket
            task.model.register_comm_hook(None, _reduced_in_place)
        task.model.reducer = _BucketsKept(task.model.reducer)
        return {"world_size": params["world_size"], "wrapped": "DistributedDataParallel"}

    def wrap_optimizer(self, optimizer, task, params):
        import inspect

        from torch.distributed.optim import ZeroRedundancyOptimizer

        trainable = [p for group in optimizer.param_groups for p in group["params"]]
        accepted = inspect.signature(type(optimizer)).parameters
        defaults = {k: v for k, v in optimizer.defaults.items() if k in accepted}
        return ZeroRedundancyOptimizer(trainable, optimizer_class=type(optimizer), **defaults)


class Fsdp(_Sharded):
    name = "fsdp"
    description = "FSDP2: parameters, gradients and optimizer state sharded (fully_shard)"
    conflicts = frozenset({"zero"})

    def apply_model(self, task, params, spec):
        import torch.distributed as dist
        from torch.distributed.fsdp import fully_shard

        from .layers import block_list

        mesh = _mesh(spec.device.partition(":")[0], dist.get_world_size(), spec.simulate)
        _, _, blocks = block_list(task.model)
        for block in blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(task.model, mesh=mesh)
        return {"world_size": params["world_size"], "sharded_blocks": len(blocks)}


def _mesh(device_type: str, world_size: int, simulated: bool):
    """The ranks' device mesh. Its rank table is read by value, so in a simulation it
    is made of real tensors (a few integers)."""
    from contextlib import nullcontext

    from torch._subclasses.fake_tensor import unset_fake_temporarily
    from torch.distributed.device_mesh import init_device_mesh

    with unset_fake_temporarily() if simulated else nullcontext():
        return init_device_mesh(device_type, (world_size,))


def _skip_value_checks_of_ddp() -> None:
    """DDP's constructor compares parameter shapes across ranks and broadcasts rank 0's
    weights, both by reading values: fake tensors have none, and in a simulation every
    rank builds the same shapes, so both checks are skipped (simulations only)."""
    import torch.nn.parallel.distributed as ddp

    ddp._verify_param_shape_across_processes = lambda *args, **kwargs: None
    ddp._sync_module_states = lambda *args, **kwargs: None


def _reduced_in_place(_state, bucket):
    """A simulated all-reduce: the bucket itself, as gloo's in-place all-reduce leaves it."""
    import torch

    future = torch.futures.Future()
    future.set_result(bucket.buffer())
    return future


class _BucketsKept:
    """DDP's reducer, except that it keeps the buckets it made at the start. By
    default a reducer rebuilds them after the first step, in the order gradients
    arrived (for overlap with the backward), agreeing on that order by a broadcast it
    reads back: fake tensors cannot, and the rebuilt buckets hold the same gradients
    in the same bytes. Kept in real runs too, so that the buckets the tracker marks as
    gradients after the first step stay the ones a simulation sees."""

    def __init__(self, reducer) -> None:
        self._reducer = reducer

    def _rebuild_buckets(self) -> bool:
        return False

    def __getattr__(self, name: str):
        return getattr(self._reducer, name)


def torch_device_index(device: str) -> int:
    return int(device.partition(":")[2] or 0)
