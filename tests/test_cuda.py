"""The CUDA path: the allocator's trace as the source of allocations, no per-op Python.

The tracker is tested everywhere on trace entries in PyTorch's ``TraceEntry`` format
(what ``torch.cuda.memory._snapshot()["device_traces"]`` holds), joined to the cheap
signals by address; the real allocator is tested where a GPU exists (marked gpu,
skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch

from memviz.core.categories import CATEGORIES, CODE
from memviz.tracking.allocator_trace import AllocatorTracker, rounded

from .conftest import run_worker

SEGMENT = 0x7F00_0000_0000
MIB = 1 << 20


def _entry(action: str, addr: int, size: int, t: float, frames=None) -> dict:
    """One TraceEntry as PyTorch writes it (``time_us``: the wall clock, in µs)."""
    return {"action": action, "addr": addr, "size": size, "stream": 0,
            "time_us": int(t * 1e6), "frames": frames or [], "compile_context": "",
            "user_metadata": ""}


class _Trace:
    """What the allocator recorded since the last read, as the history hands it over."""

    def __init__(self) -> None:
        self.pending: list[dict] = []
        self.reads = 0

    def add(self, *entries: dict) -> None:
        self.pending.extend(entries)

    def take(self) -> list[dict]:
        self.reads += 1
        out, self.pending = self.pending, []
        return out


@pytest.fixture
def traced():
    now = [0.0]
    trace = _Trace()
    tracker = AllocatorTracker(lambda: now[0], 0.0, trace.take, wall_offset=0.0)
    tracker.start()
    yield tracker, trace, now
    tracker.stop()


def _events(tracker, messages: list[dict] | None = None) -> list[tuple]:
    rows = []
    for msg in tracker.take_messages() if messages is None else messages:
        if msg["type"] == "tensor_events":
            c = msg["columns"]
            rows += list(zip(c["kind"].tolist(), c["nbytes"].tolist(),
                             [CATEGORIES[k] for k in c["category"].tolist()], strict=True))
    return rows


def test_blocks_from_the_trace_take_the_category_a_signal_gives_their_address(traced):
    tracker, trace, now = traced
    assert tracker._mode is None  # the per-op dispatch mode is never entered
    tracker.set_detail(True)
    assert tracker._mode is None and tracker.detailed
    now[0] = 1.0
    tracker.set_phase("forward", 0)
    a, b = SEGMENT, SEGMENT + 4 * MIB
    trace.add(_entry("segment_alloc", SEGMENT, 20 * MIB, 1.05),
              _entry("alloc", a, 4 * MIB, 1.1), _entry("alloc", b, 2 * MIB, 1.2),
              _entry("free_completed", b, 2 * MIB, 1.3))
    now[0] = 1.15
    tracker.tag_block(a, 4 * MIB - 100, CODE["activation"], "transformer.h.0", torch.float32,
                      (1024, 1023))  # autograd saved the storage at a
    now[0] = 2.0
    tracker.set_phase("backward", 0)  # a phase edge reads the trace
    assert trace.reads >= 2
    assert tracker.total == 4 * MIB
    assert tracker.peak == 6 * MIB
    summary = tracker.summary()
    assert summary["peak_by_category"]["activation"] == 4 * MIB
    assert summary["peak_by_category"]["temporary"] == 2 * MIB
    # a's allocation carries the signal's category, shape and module (not yet sent)
    messages = tracker.take_messages()
    assert _events(tracker, messages) == [(0, 4 * MIB, "activation"),
                                          (0, 2 * MIB, "temporary"), (1, 2 * MIB, "temporary")]
    strings = {(kind, ident): text for m in messages if m["type"] == "strings"
               for kind, ident, text in m["entries"]}
    events = next(m for m in messages if m["type"] == "tensor_events")["columns"]
    assert strings[("module", int(events["module"][0]))] == "transformer.h.0"
    assert strings[("shape", int(events["shape"][0]))] == "1024×1023"
    assert strings[("dtype", int(events["dtype"][0]))] == "float32"
    assert strings[("device", int(events["device"][0]))] == "cuda:0"
    state = tracker.segment_summary()
    assert state == {"reserved": 20 * MIB, "segments": 1, "allocated": 4 * MIB,
                     "largest_free_block": 16 * MIB, "by_category": state["by_category"]}
    assert state["by_category"]["activation"] == 4 * MIB


def test_weights_made_before_the_trace_are_found_by_their_signal(traced):
    tracker, trace, now = traced
    now[0] = 0.5
    tracker.tag_block(SEGMENT, 1000, CODE["parameter"], "lm_head", torch.float32, (250,))
    tracker.pull()
    assert tracker.total == rounded(1000) == 1024  # the block the allocator gave it
    assert tracker.live_bytes()["parameter"] == 1024
    # its later free arrives from the trace like any other
    trace.add(_entry("free_completed", SEGMENT, 1024, 0.9))
    tracker.pull()
    assert tracker.total == 0


def test_a_retag_after_the_allocation_was_sent_is_an_event(traced):
    tracker, trace, now = traced
    tracker.set_phase("backward", 0)
    trace.add(_entry("alloc", SEGMENT, 8 * MIB, 0.1))
    tracker.pull()
    assert _events(tracker) == [(0, 8 * MIB, "temporary")]
    now[0] = 0.2
    tracker.tag_block(SEGMENT, 8 * MIB, CODE["gradient"], None, None, None)
    tracker.pull()
    assert _events(tracker) == [(2, 8 * MIB, "gradient")]
    assert tracker.live_bytes()["gradient"] == 8 * MIB


def test_a_reused_address_is_a_new_block_and_a_late_signal_names_the_live_one(traced):
    tracker, trace, now = traced
    tracker.set_phase("forward", 0)
    trace.add(_entry("alloc", SEGMENT, MIB, 0.1), _entry("free_completed", SEGMENT, MIB, 0.2),
              _entry("alloc", SEGMENT, 2 * MIB, 0.3))
    now[0] = 0.35
    tracker.tag_block(SEGMENT, 2 * MIB, CODE["activation"], None, None, None)
    tracker.pull()
    assert [e[1:] for e in _events(tracker)] == [
        (MIB, "temporary"), (MIB, "temporary"), (2 * MIB, "activation")]


def test_outside_a_phase_blocks_are_other_and_an_oom_is_kept(traced):
    tracker, trace, _ = traced
    trace.add(_entry("alloc", SEGMENT, MIB, 0.1),
              {"action": "oom", "size": 80 << 30, "device_free": 3 << 30, "stream": 0,
               "time_us": 200_000, "frames": []})
    tracker.pull()
    assert tracker.live_bytes()["other"] == MIB
    assert tracker.last_oom == {"t": pytest.approx(0.2), "request_bytes": 80 << 30,
                                "device_free": 3 << 30}


def test_stacks_come_from_the_trace_frames():
    now = [0.0]
    trace = _Trace()
    tracker = AllocatorTracker(lambda: now[0], 0.0, trace.take, wall_offset=0.0, stacks=True)
    tracker.start()
    try:
        frames = [{"filename": "train.py", "line": 42, "name": "forward"},
                  {"filename": "train.py", "line": 7, "name": "main"}]
        trace.add(_entry("alloc", SEGMENT, MIB, 0.1, frames),
                  _entry("alloc", SEGMENT + MIB, MIB, 0.2, frames))
        tracker.pull()
        messages = {m["type"]: m for m in tracker.take_messages()}
        [[stack_id, frame_ids]] = messages["stacks"]["entries"]
        names = {ident: text for kind, ident, text in messages["strings"]["entries"]
                 if kind == "frame"}
        assert [names[i] for i in frame_ids] == ["train.py:42:forward", "train.py:7:main"]
        assert messages["tensor_events"]["columns"]["stack"].tolist() == [stack_id] * 2
    finally:
        tracker.stop()


def test_blocks_round_to_512_bytes():
    assert [rounded(n) for n in (1, 512, 513, 4096, 1_000_000)] == [512, 512, 1024, 4096,
                                                                     1_000_448]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")
def test_tracked_bytes_equal_the_allocator_at_every_step_boundary():
    run, _ = run_worker(model="gpt2-tiny", steps=3, device="cuda", batch_size=4, seq_len=256)
    assert run.state == "finished", run.error
    assert len(run.cuda_memory) == 3
    for entry in run.cuda_memory:
        assert entry["tracked_rounded"] == entry["torch_allocated"], entry
        assert entry["reserved"] >= entry["allocated"] == entry["torch_allocated"]
    assert all(s.detailed for s in run.steps)  # every block, every step, from the trace
    cats = run.worker_summary["tracking"]["peak_by_category"]
    assert cats["parameter"] > 0 and cats["activation"] > 0 and cats["optimizer_state"] > 0
    env = run.environment
    assert env["nvml"]["available"] and env["cuda"]["name"]
    assert run.samples.has_data("gpu_device_used") and run.samples.has_data("torch_reserved")
    assert all(s.peak_gpu_bytes > 0 for s in run.steps)


def test_the_history_is_asked_for_in_torchs_own_terms():
    """Where no GPU is lent, the calls are checked against torch's signatures."""
    import inspect

    from memviz.tracking.allocator_trace import CudaHistory

    for stacks in (False, True):
        history = CudaHistory(0, stacks)
        inspect.signature(torch.cuda.memory._record_memory_history).bind(
            "all", clear_history=True, **history.options)
        assert history.options["context"] == ("alloc" if stacks else None)
    inspect.signature(torch.cuda.memory._snapshot).bind(0)
