"""The simulation's fake mode: its cheaper cache key tells apart exactly the op calls
torch's own key tells apart, falls back to torch's where it cannot, and what the
cache builds from it is what a fresh dispatch builds (torch's own cross-check)."""

from __future__ import annotations

import itertools
import time

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode, _CacheKeyState

from memviz.tracking import TensorTracker
from memviz.worker.fake_mode import SimulationFakeMode

aten = torch.ops.aten


def _calls(mode: SimulationFakeMode) -> list[tuple]:
    """Op calls that differ in one fact each, or in none (the pairs that must match)."""
    with mode:
        a = torch.empty(8, 16)
        b = torch.empty(8, 16)
        grad = torch.empty(8, 16, requires_grad=True)
        half = torch.empty(8, 16, dtype=torch.float16)
        big = torch.empty(8, 32)
        column_major = torch.empty(16, 8).t()
        offset = big[:, 16:]  # same sizes and strides as big[:, :16], another offset
        start = big[:, :16]
        conj = torch.empty(8, 16, dtype=torch.complex64).conj()
        plain = torch.empty(8, 16, dtype=torch.complex64)
        with torch.inference_mode():
            inference = torch.empty(8, 16)
    return [
        (aten.add.Tensor, (a, b), {}), (aten.add.Tensor, (b, a), {}),  # same facts
        (aten.add.Tensor, (a, grad), {}), (aten.add.Tensor, (a, half), {}),
        (aten.add.Tensor, (a, column_major), {}), (aten.add.Tensor, (a, start), {}),
        (aten.add.Tensor, (a, offset), {}), (aten.add.Tensor, (a, inference), {}),
        (aten.add.Tensor, (a, b), {"alpha": 2}), (aten.add.Tensor, (a, b), {"alpha": 2.0}),
        (aten.add.Tensor, (a, b), {"alpha": True}),
        (aten.mul.Scalar, (a, 1), {}), (aten.mul.Scalar, (a, 1.0), {}),
        (aten.mul.Tensor, (plain, plain), {}), (aten.mul.Tensor, (conj, plain), {}),
        (aten.view.default, (a, [16, 8]), {}), (aten.view.default, (a, (16, 8)), {}),
        (aten.view.default, (a, [128]), {}),
        (aten.sum.dim_IntList, (a, [0]), {}), (aten.sum.dim_IntList, (a, [0], True), {}),
        (aten._to_copy.default, (a,), {"dtype": torch.float16}),
        (aten._to_copy.default, (a,), {"dtype": torch.bfloat16}),
        (aten._foreach_mul.Scalar, ([a, b], 0.5), {}),
        (aten._foreach_mul.Scalar, ([a, half], 0.5), {}),
    ]


def _torch_key(mode, call):
    func, args, kwargs = call
    return FakeTensorMode._cache_key(mode, _CacheKeyState(None), func, args, kwargs)


def _fast_key(mode, call):
    func, args, kwargs = call
    return mode._cache_key(_CacheKeyState(None), func, args, kwargs)


def test_the_fast_key_tells_apart_what_torch_key_tells_apart():
    mode = SimulationFakeMode(allow_non_fake_inputs=True)
    calls = _calls(mode)
    for first, second in itertools.combinations(calls, 2):
        same_for_torch = _torch_key(mode, first) == _torch_key(mode, second)
        assert (_fast_key(mode, first) == _fast_key(mode, second)) == same_for_torch, \
            (first[0], first[2], second[0], second[2])
    # the pairs that should match do, so the relation above is not all "different"
    assert _fast_key(mode, calls[0]) == _fast_key(mode, calls[1])
    # and a fast key is never one torch makes
    assert all(_fast_key(mode, c) != _torch_key(mode, c) for c in calls)


def test_what_the_fast_key_cannot_describe_takes_torch_key():
    mode = SimulationFakeMode(allow_non_fake_inputs=True)
    other = FakeTensorMode()
    with other:
        foreign = torch.empty(4)
    with mode:
        own = torch.empty(4)
    real = torch.empty(4)
    for args in ((own, real), (own, foreign)):  # a real tensor; another mode's fake one
        with pytest.raises(Exception, match=r"non-fake tensor|not our fake"):
            _fast_key(mode, (aten.add.Tensor, args, {}))  # torch's key, which bypasses


def test_the_cache_builds_from_fast_keys_what_a_fresh_dispatch_builds():
    """torch's cross-check dispatches every cache hit afresh and compares sizes, strides,
    storage offsets, dtypes and aliasing: a training step (views, in-place ops, an
    optimizer) under the tracker, twice, so that its second pass is all hits."""
    mode = SimulationFakeMode(allow_non_fake_inputs=True)
    mode.cache_crosscheck_enabled = True
    hits = FakeTensorMode.cache_hits
    tracker = TensorTracker(time.monotonic, time.monotonic())
    with mode:
        model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(),
                                    torch.nn.LayerNorm(64), torch.nn.Linear(64, 8))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        tracker.start(model)
        try:
            for _ in range(2):
                x = torch.randn(4, 32)
                loss = model(x).float().pow(2).mean()
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
        finally:
            tracker.stop()
    assert FakeTensorMode.cache_hits - hits > 40
    assert tracker.summary()["tracked_bytes"] > 0


def test_a_fake_tensors_device_is_answered_by_the_tracker():
    """The dispatcher asks a fake tensor's device (``prim.device``) each time C++ reads
    it; the tracker answers as the fake tensor does, without a second Python mode."""
    asked = []
    mode = SimulationFakeMode(allow_non_fake_inputs=True)
    original = type(mode).dispatch

    def dispatch(self, func, *rest):
        asked.append(func)
        return original(self, func, *rest)

    tracker = TensorTracker(time.monotonic, time.monotonic())
    with mode:
        t = torch.empty(4)
        cuda = mode.from_tensor(torch.empty(4), static_shapes=True)
        cuda.fake_device = torch.device("cuda", 0)
        tracker.start()
        type(mode).dispatch = dispatch
        try:
            assert torch.ops.prim.device.default(t) == torch.device("cpu")
            assert torch.ops.prim.device.default(cuda) == torch.device("cuda", 0)
        finally:
            type(mode).dispatch = original
            tracker.stop()
    assert torch.ops.prim.device.default not in asked
