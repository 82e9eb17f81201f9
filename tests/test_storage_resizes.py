"""A storage resized in place (FSDP2's free of an all-gathered block, its regrowth for
the next forward) is a free and an allocation of what the storage holds, measured
against torch.profiler's memory events in the same process."""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

import memviz


def _profiler_peak(work) -> int:
    """The highest live bytes over the start of ``work``, from every c10 allocation."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        work()
    events = sorted((e for e in prof.profiler.kineto_results.events()
                     if e.name() == "[memory]"), key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def _freed_by_resize() -> list[torch.Tensor]:
    kept = []
    for _ in range(3):
        t = torch.empty(1_000_000)
        kept.append(t)
        t.untyped_storage().resize_(0)  # freed; the tensor and its storage object stay
    return kept


def _regrown() -> list[torch.Tensor]:
    """As FSDP2 does it: one storage, emptied and grown again, twice."""
    t = torch.empty(250_000)
    for _ in range(2):
        t.untyped_storage().resize_(0)
        t.untyped_storage().resize_(2_000_000)
    big = torch.empty(100_000)
    return [t, big]


def test_a_storage_resized_to_nothing_is_freed_as_the_profiler_sees(tmp_path):
    assert _profiler_peak(_freed_by_resize) == 4_000_000
    with memviz.track(output=str(tmp_path / "r.memviz"), force=True) as tracking:
        _freed_by_resize()
    assert tracking.result.peak_bytes == 4_000_000  # was 12,000,000: three never freed


def test_a_storage_grown_again_counts_what_it_holds_each_moment(tmp_path):
    expected = _profiler_peak(_regrown)
    assert expected == 2_000_000 + 400_000
    with memviz.track(output=str(tmp_path / "g.memviz"), force=True) as tracking:
        _regrown()
    assert tracking.result.peak_bytes == expected


def test_a_resized_parameter_stays_a_parameter_and_the_wrapper_goes(tmp_path):
    original = torch.UntypedStorage.resize_
    model = torch.nn.Linear(256, 256, bias=False)
    nbytes = 256 * 256 * 4
    with memviz.track(output=str(tmp_path / "p.memviz"), force=True, model=model) as t:
        storage = model.weight.untyped_storage()
        storage.resize_(0)  # sharded away
        storage.resize_(nbytes)  # gathered back for compute
        model(torch.randn(8, 256))
    assert t.result.peak_by_category["parameter"] == nbytes
    assert torch.UntypedStorage.resize_ is original  # nothing of memviz left in torch


def test_two_trackers_share_one_wrapper_and_the_last_one_takes_it_off():
    """A simulation's ranks track one after another while rank 0's tracker lives: the
    one that stops first leaves the other's resizes seen, and torch gets its own method
    back only when both have stopped."""
    import time

    from memviz.tracking import TensorTracker

    original = torch.UntypedStorage.resize_
    first, second = (TensorTracker(time.monotonic, time.monotonic()) for _ in range(2))
    first.start()
    second.start()
    second.set_detail(False)  # their per-op modes, left in the order they were entered
    first.set_detail(False)
    first.stop()
    t = torch.empty(250_000)
    second.retag(t, "temporary")
    assert second.total == 1_000_000
    t.untyped_storage().resize_(0)
    assert second.total == 0  # still seen after the first tracker stopped
    assert torch.UntypedStorage.resize_ is not original
    second.stop()
    assert torch.UntypedStorage.resize_ is original
