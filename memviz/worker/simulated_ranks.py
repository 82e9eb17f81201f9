"""A sharded run (``zero``, ``fsdp``) simulated: every rank in this one process.

Each rank joins torch's fake process group (``torch.testing._internal.distributed.
fake_pg``): collectives return at once without moving anything, which on fake
tensors is all a collective has to do, so no peer process is started and a world
of 8 ranks is simulated on one CPU. Rank 0 is the run that streams (its timeline,
allocations and steps); then ranks 1..N-1 run the same step one after another,
each on its own share of the parameters and its own rows of the batch, with its
own tracker, and their figures join rank 0's in the summary's ``distributed``
entry, as a real sharded run's do. Ranks do differ: ZeroRedundancyOptimizer gives
each rank whole parameters (greedily by size), and FSDP's last ranks may hold
smaller or empty chunks.
"""

from __future__ import annotations

import threading
from typing import Any

import torch.distributed as dist

from ..core.rank_summary import with_sum
from ..core.spec import RunSpec
from .emitter import now


def join_fake_group(rank: int, world_size: int) -> None:
    """Be ``rank`` of ``world_size`` in a process group that communicates nothing."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        dist.destroy_process_group()
    dist.init_process_group("fake", store=FakeStore(), rank=rank, world_size=world_size)


class _DrainingEmitter:
    """Where a simulated rank after the first streams: nowhere. Its tracker's events
    are drained at each message so they do not pile up; its figures are kept."""

    def __init__(self) -> None:
        self.sources: list = []
        self.failed = None

    def send(self, message: dict) -> None:
        for source in self.sources:
            source()

    def sample(self, row) -> None:
        pass

    def close(self) -> None:
        pass


def simulate_rank(spec: RunSpec, reported: RunSpec, rank: int, world_size: int, t0: float,
                  stop: threading.Event) -> dict[str, Any]:
    """Rank ``rank``'s step on fake tensors; its figures as a real rank reports them."""
    import torch

    from ..models import load_task
    from ..techniques.plan import Plan
    from ..tracking import TensorTracker
    from . import moe_routing, ranks
    from .gpu import NvmlDevice
    from .runner import Runner
    from .samplers import MemorySampler

    join_fake_group(rank, world_size)
    plan = Plan(spec, reported)
    emitter = _DrainingEmitter()
    # a simulation reads no GPU: the device stands in for one this machine may lack
    sampler = MemorySampler(spec.sample_hz, emitter.sample, now, t0,
                            NvmlDevice(False, "simulated"), None)
    sampler.start()
    tracker = None
    try:
        torch.manual_seed(spec.seed)
        task = load_task(spec, plan.model_dtype())
        ranks.reseed_data(task, spec, rank)
        plan.apply_model(task)
        moe_routing.apply(task.model, spec, simulated=True)
        tracker = TensorTracker(now, t0)
        tracker.start(task.model)
        for nbytes, category, module, label in plan.opaque_bytes(task):
            tracker.add_opaque(nbytes, category, module, label)
        emitter.sources.append(tracker.take_messages)
        runner = Runner(ranks.local_spec(spec, world_size), task, emitter, sampler, stop, t0,
                        tracker, plan)
        runner.run()
    finally:
        if tracker is not None:
            tracker.stop()
        sampler.stop()
    return ranks.rank_figures(rank, tracker, runner.done)


def simulate_other_ranks(spec: RunSpec, reported: RunSpec, world_size: int, t0: float,
                         stop: threading.Event, first: dict[str, Any],
                         say) -> dict[str, Any]:
    """Ranks 1..N-1 after rank 0 (``first``, its figures); every rank's figures and
    their sum. ``say(text)`` logs each rank's progress."""
    figures = [first]
    for rank in range(1, world_size):
        say(f"simulating rank {rank} of {world_size}")
        figures.append(simulate_rank(spec, reported, rank, world_size, t0, stop))
    if dist.is_initialized():
        dist.destroy_process_group()
    return with_sum(figures)
