"""The tensor tracker: exact categories, agreement with torch.profiler, no leaks."""

from __future__ import annotations

import math
import textwrap
import time

import numpy as np
import psutil
import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from torch.profiler._memory_profiler import Action

from memviz.core.categories import CATEGORIES
from memviz.core.spec import RunSpec
from memviz.models import load_task
from memviz.tracking import TensorTracker
from memviz.tracking.step import train_step

from .conftest import run_worker
from .test_model_sources import assert_exact_after_adamw_step

ODD_MODEL = textwrap.dedent('''
    import torch
    from torch import nn

    class Odd(nn.Module):
        """A frozen sub-module, a tied weight, a registered buffer, odd sizes."""

        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(131, 37)
            self.frozen = nn.Linear(37, 53)
            self.frozen.requires_grad_(False)
            self.mix = nn.Linear(53, 37, bias=False)
            self.norm = nn.LayerNorm(37)
            self.head = nn.Linear(37, 131, bias=False)
            self.head.weight = self.embed.weight  # tied: one storage
            self.register_buffer("scale", torch.full((37,), 0.5))

        def forward(self, ids):
            x = self.embed(ids)
            x = self.norm(x + self.mix(torch.tanh(self.frozen(x)))) * self.scale
            return self.head(x)

    def build():
        return Odd()
''')
ODD_TRAINABLE = (131 * 37 + 53 * 37 + 37 + 37) * 4  # embed(tied head), mix, norm w+b
ODD_FROZEN = (37 * 53 + 53) * 4
ODD_BUFFER = 37 * 4


@pytest.fixture(scope="module")
def odd_factory(tmp_path_factory):
    path = tmp_path_factory.mktemp("odd") / "odd.py"
    path.write_text(ODD_MODEL)
    return f"{path}:build"


def test_odd_model_categories_are_exact(odd_factory):
    run, _ = run_worker(model=odd_factory, steps=2, batch_size=3, seq_len=17)
    assert run.state == "finished", run.error
    assert run.model["trainable_parameter_bytes"] == ODD_TRAINABLE
    assert run.model["frozen_parameter_bytes"] == ODD_FROZEN
    assert run.model["buffer_bytes"] == ODD_BUFFER
    assert_exact_after_adamw_step(run)
    assert run.model["trainable_parameter_tensors"] == 4  # tied weight listed once


def test_sgd_without_momentum_keeps_no_optimizer_state(odd_factory):
    run, _ = run_worker(model=odd_factory, steps=2, batch_size=3, seq_len=17, optimizer="sgd")
    assert run.state == "finished", run.error
    live = run.tensors.marks[-1]["live_by_category"]
    assert live["optimizer_state"] == 0
    assert live["gradient"] == ODD_TRAINABLE


def test_summary_reports_tracked_peak_by_category(tmp_path, gpt2_train_run):
    from memviz.core.summary import build_summary

    summary = build_summary(gpt2_train_run)
    by_cat = summary["peak_by_category"]
    assert set(by_cat) == set(CATEGORIES)
    assert sum(by_cat.values()) == summary["peak"]["tracked_bytes"]
    assert all(summary["max_by_category"][c] >= by_cat[c] for c in CATEGORIES)
    assert summary["max_by_category"]["activation"] > 0
    assert summary["max_by_category"]["gradient"] == gpt2_train_run.model["parameter_bytes"]
    assert summary["peak"]["tracked_bytes"] < summary["peak"]["rss_bytes"]
    assert all(s["tracked_peak_bytes"] > 0 for s in summary["steps"])


def test_events_stream_into_rows_that_agree_with_the_tracker(gpt2_train_run):
    tensors = gpt2_train_run.tensors
    rows = tensors.rows
    assert len(rows) == gpt2_train_run.worker_summary["tracking"]["allocations"]
    nbytes = np.asarray(rows.column("nbytes"))
    assert (nbytes > 0).all()
    # what is live at the end, per category, is what the samples say at the end
    live = np.isnan(rows.column("t_free"))
    last = {c: gpt2_train_run.samples.column(f"cat_{c}")[-1] for c in CATEGORIES}
    for code, name in enumerate(CATEGORIES):
        in_rows = int(nbytes[live & (np.asarray(rows.column("category")) == code)].sum())
        assert in_rows == last[name], name
    modules = set(tensors.strings["module"])
    assert any(m.startswith("transformer.h.") for m in modules)
    assert "addmm.default" in tensors.strings["op"]  # GPT-2 Conv1D projections
    # layout offsets: no two live allocations overlap at any moment we look at
    for t in np.linspace(0, rows.column("t_alloc").max(), 7):
        idx = tensors.live_at(t)
        start = np.asarray(rows.column("offset"))[idx]
        order = np.argsort(start)
        ends = (start + nbytes[idx])[order]
        assert (start[order][1:] >= ends[:-1]).all()


def test_inference_saves_no_activations_and_generation_fills_a_kv_cache():
    run, _ = run_worker(model="gpt2-tiny", mode="infer", steps=1, batch_size=2, seq_len=32)
    summary = run.worker_summary["tracking"]
    assert summary["max_by_category"]["activation"] == 0
    assert summary["max_by_category"]["gradient"] == 0
    run, _ = run_worker(model="gpt2-tiny", mode="generate", steps=1, batch_size=2, seq_len=16,
                        max_new_tokens=8)
    kv = run.worker_summary["tracking"]["max_by_category"]["kv_cache"]
    # 4 layers × (K and V) × batch 2 × 4 heads × ≥ 23 positions × 64 dims × 4 bytes
    assert kv >= 4 * 2 * 2 * 4 * 23 * 64 * 4


def test_samples_level_tracks_no_tensors():
    run, _ = run_worker(model="conv-lm", steps=1, batch_size=1, seq_len=16, track="samples")
    assert run.state == "finished"
    assert len(run.tensors) == 0
    assert run.worker_summary["tracking"] is None
    assert not run.samples.has_data("tracked_total")


def test_stacks_level_records_python_stacks():
    run, _ = run_worker(model="conv-lm", steps=1, batch_size=1, seq_len=16,
                        track="tensors+stacks")
    rows = run.tensors.rows
    stacks = np.asarray(rows.column("stack"))
    activation = np.asarray(rows.column("category")) == CATEGORIES.index("activation")
    assert activation.any() and (stacks[activation] >= 0).all()
    frames = run.tensors.stack_text(int(stacks[activation][0]))
    # an activation's stack reaches the model's own forward, torch's frames left out
    assert any("presets.py" in f and ":forward" in f for f in frames), frames
    assert not any("/torch/" in f for f in frames)


def _peaks(model: str) -> tuple[int, int]:
    """(tracked, profiler) peak bytes above the start of one training step."""
    torch.manual_seed(0)
    task = load_task(RunSpec(model=model))
    optimizer = torch.optim.AdamW(task.model.parameters(), lr=1e-3)
    train_step(task, optimizer, seq_len=128)  # optimizer state exists before either measures
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        train_step(task, optimizer, seq_len=128)
    timeline = prof._memory_profile().timeline
    deltas = sorted((t, size if action == Action.CREATE else -size)
                    for t, action, _, size in timeline
                    if action in (Action.CREATE, Action.DESTROY))
    profiler_peak = int(np.cumsum([d for _, d in deltas]).max())
    tracker = TensorTracker(time.monotonic, time.monotonic())
    tracker.start(task.model)
    tracker.tag_optimizer_state(optimizer)
    try:
        start = tracker.total
        tracker.take_step_peak()
        train_step(task, optimizer, tracker, seq_len=128)
        tracked_peak = tracker.take_step_peak() - start
    finally:
        tracker.stop()
    return tracked_peak, profiler_peak


@pytest.mark.parametrize("model", ["gpt2-tiny", "llama-tiny", "bert-tiny"])
def test_tracked_peak_matches_torch_profiler_within_2_percent(model):
    tracked, profiled = _peaks(model)
    assert profiled > 1_000_000
    assert math.isclose(tracked, profiled, rel_tol=0.02), (tracked, profiled)


@pytest.fixture
def without_onednn():
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = enabled


def test_lstm_peak_matches_the_profiler_with_torch_own_kernels(without_onednn):
    tracked, profiled = _peaks("lstm-lm")
    assert math.isclose(tracked, profiled, rel_tol=0.02), (tracked, profiled)


@pytest.mark.parametrize("model,low", [("lstm-lm", 0.5), ("conv-lm", 0.5)])
def test_kernel_internal_workspace_is_the_documented_blind_spot(model, low):
    """oneDNN's LSTM and CPU convolutions allocate workspace inside the kernel, below
    the dispatcher: the profiler (an allocator hook) sees it, a dispatch-level
    tracker cannot. docs/tracking.md states the gap; this test keeps it true. How
    large the workspace is depends on the CPU's kernels (the convolutions' took 10 %
    of the peak on one CPU, 46 % on an AVX2 one), not on memviz: the tracked bytes
    are the same on both."""
    tracked, profiled = _peaks(model)
    assert low * profiled < tracked < profiled, (tracked, profiled)


def test_tracking_many_steps_leaks_neither_tensors_nor_hooks():
    task = load_task(RunSpec(model="gpt2-tiny"))
    optimizer = torch.optim.AdamW(task.model.parameters(), lr=1e-3)
    tracker = TensorTracker(time.monotonic, time.monotonic())
    tracker.start(task.model)
    process = psutil.Process()
    try:
        live, rss = [], []
        for _ in range(6):
            train_step(task, optimizer, tracker, seq_len=128)
            live.append(tracker.total)
            rss.append(process.memory_info().rss)
            assert tracker.scope._marks == []  # each step's module marks are dropped
        assert len(set(live[1:])) == 1  # the same bytes live after every step
        # the layout reuses freed space: its top stays within a few × the live bytes
        assert tracker.extent <= 4 * tracker.peak
        # no hook or mark of an earlier step holds a gradient buffer
        assert rss[-1] - rss[1] < 100 * 2**20
    finally:
        tracker.stop()


def test_only_ops_that_can_allocate_are_looked_at():
    """Views and in-place ops return their input's storage and are skipped; an
    ``out=`` overload or a resize can allocate, so those are always looked at."""
    from memviz.tracking.tracker import makes_storage

    aten = torch.ops.aten
    assert not makes_storage(aten.view.default)
    assert not makes_storage(aten.add_.Tensor)
    assert not makes_storage(aten.split.Tensor)
    assert makes_storage(aten.add.Tensor)
    assert makes_storage(aten.add.out)
    assert makes_storage(aten.resize_.default)
    assert makes_storage(aten.max.dim)


def test_an_out_argument_resized_by_the_op_is_an_allocation():
    tracker = TensorTracker(time.monotonic, time.monotonic())
    tracker.start(torch.nn.Linear(2, 2))
    try:
        before = tracker.total
        a = torch.ones(10, 30)
        out = torch.empty(0)  # no bytes yet: nothing to track
        assert tracker.total == before + a.nbytes
        torch.add(a, a, out=out)  # the op resizes it to 10 × 30 floats
        assert tracker.total == before + 2 * a.nbytes
        view = out.view(300)  # a view: no new bytes
        view.mul_(2)  # in place: no new bytes
        assert tracker.total == before + 2 * a.nbytes
        del out, view
        assert tracker.total == before + a.nbytes
    finally:
        tracker.stop()


def _allocations_by_phase(messages: list[dict]) -> dict[str, list[tuple[str, str]]]:
    """{phase name: [(module, op)]} of the allocations in ``messages``."""
    from memviz.tracking.tracker import ALLOC, PHASES

    strings: dict[str, dict[int, str]] = {}
    out: dict[str, list[tuple[str, str]]] = {}
    for message in messages:
        if message["type"] == "strings":
            for table, ident, value in message["entries"]:
                strings.setdefault(table, {})[ident] = value
        elif message["type"] == "tensor_events":
            c = message["columns"]
            for kind, phase, module, op in zip(c["kind"], c["phase"], c["module"], c["op"],
                                               strict=True):
                if kind == ALLOC:
                    out.setdefault(PHASES[phase], []).append(
                        (strings["module"][int(module)], strings["op"][int(op)]))
    return out


def test_backward_allocations_belong_to_the_module_whose_backward_makes_them():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    tracker = TensorTracker(time.monotonic, time.monotonic())
    tracker.start(model)
    try:
        x = torch.randn(5, 8)
        tracker.set_phase("forward", 0)
        loss = model(x).square().sum()
        tracker.set_phase("backward", 0)
        loss.backward()
        tracker.set_phase("", 0)
        made = _allocations_by_phase(tracker.take_messages())
    finally:
        tracker.stop()
    forward = {m for m, op in made["forward"] if op == "addmm.default"}
    assert forward == {"0", "2"}
    backward = {}
    for module, op in made["backward"]:
        backward.setdefault(op, set()).add(module)
    # each Linear's backward makes its weight gradient with mm; the loss's
    # square and sum run outside any module
    assert backward["mm.default"] == {"0", "2"}
    assert "" in backward["mul.Tensor"]
    assert backward["threshold_backward.default"] == {"1"}
    assert tracker.scope._marks == []  # dropped once backward is over


@pytest.mark.parametrize("simulate", [False, True], ids=["measured", "simulated"])
def test_a_first_step_peak_carries_the_optimizer_state_as_optimizer_state(odd_factory,
                                                                          simulate):
    """At batch 1 the step peaks inside its first optimizer.step(), where AdamW makes
    its state: that state is optimizer_state at the peak (it becomes known as state
    only when step() returns), the step counters too (made by torch.tensor)."""
    run, _ = run_worker(model=odd_factory, steps=1, batch_size=1, seq_len=4,
                        simulate=simulate)
    assert run.state == "finished", run.error
    tracking = run.worker_summary["tracking"]
    [optimizer] = [p for p in run.phases if p.name == "optimizer"]
    assert optimizer.begin <= tracking["peak_t"] <= optimizer.end  # inside step()
    at_peak = tracking["peak_by_category"]
    adamw_state = 2 * ODD_TRAINABLE + 4 * 4  # exp_avg, exp_avg_sq, a float32 step each
    assert at_peak["optimizer_state"] == adamw_state
    assert at_peak["gradient"] == ODD_TRAINABLE
    assert sum(at_peak.values()) == tracking["tracked_bytes"]
    # what is left as temporary is the update's own scratch, less than the state
    assert 0 < at_peak["temporary"] < adamw_state


@pytest.mark.parametrize("simulate", [False, True], ids=["measured", "simulated"])
def test_an_inference_forward_keeps_its_kv_cache_as_kv_cache(simulate):
    """One forward of a causal LM fills its KV cache (transformers' use_cache default):
    at the peak that is kv_cache, exactly the keys and values of every layer (llama-tiny:
    4 layers, 2 of its 4 heads for keys and values, 64 dims), not temporaries. It is
    what sets Llama-2-7B (32 key-value heads) 3 GiB above Mistral-7B (8) at 1 × 4096."""
    batch, seq = 2, 96
    run, _ = run_worker(model="llama-tiny", mode="infer", steps=1, batch_size=batch,
                        seq_len=seq, simulate=simulate)
    assert run.state == "finished", run.error
    at_peak = run.worker_summary["tracking"]["peak_by_category"]
    layers, kv_heads, head_dim = 4, 2, 256 // 4
    assert at_peak["kv_cache"] == 2 * layers * batch * seq * kv_heads * head_dim * 4


def test_checkpointings_saved_generator_states_are_tracked():
    """torch.utils.checkpoint copies the CPU generator's state (5,056 bytes) for every
    checkpointed block, in C++ where no op shows it, and keeps it until backward
    recomputes the block: gpt2-tiny's four blocks, 20,224 bytes the profiler counted."""
    from memviz.techniques import parse_technique

    run, _ = run_worker(model="gpt2-tiny", steps=1, batch_size=1, seq_len=16, detail="all",
                        techniques=[parse_technique("checkpointing")])
    assert run.state == "finished", run.error
    log = run.tensors
    op = log.strings["op"].index("get_rng_state")
    rows = np.flatnonzero(log.rows.column("op") == op)
    # one a block in forward, kept; one a block as backward recomputes it (torch saves
    # the state it is at and restores it after)
    assert log.rows.column("nbytes")[rows].tolist() == [5056] * 8
    [forward] = [p for p in run.phases if p.name == "forward"]
    [backward] = [p for p in run.phases if p.name == "backward"]
    made, freed = log.rows.column("t_alloc")[rows], log.rows.column("t_free")[rows]
    assert ((made >= forward.begin) & (made <= forward.end)).sum() == 4
    assert (freed[made <= forward.end] > backward.begin).all()  # kept until recomputed
    assert (freed <= backward.end).all()


class _ConvAttention(torch.nn.Module):
    """Every op family torch counts FLOPs for: an embedding into a convolution, attention
    (its fused kernel and a plain bmm), linear layers, one block checkpointed."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(64, 32)
        self.conv = torch.nn.Conv1d(32, 32, 3, padding=1)
        self.qkv = torch.nn.Linear(32, 96)
        self.mix = torch.nn.Linear(32, 32)
        self.head = torch.nn.Linear(32, 64)

    def block(self, h: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(h).view(h.shape[0], h.shape[1], 3, 2, 16).unbind(2)
        a = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        scores = torch.bmm(h, h.transpose(1, 2)).softmax(-1)
        return self.mix(a.transpose(1, 2).reshape_as(h) + torch.bmm(scores, h))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.embed(ids).transpose(1, 2)).transpose(1, 2)
        h = torch.utils.checkpoint.checkpoint(self.block, h, use_reentrant=False)
        return self.head(h)


def test_a_detailed_steps_flops_are_torchs_own_count():
    """The tracker counts a step's FLOPs from the ops it sees, by the flop counter's own
    formulas: the same figure as torch's FlopCounterMode around the same step,
    checkpointing's recomputed forward included."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = _ConvAttention()
    ids = torch.randint(0, 64, (2, 24))
    tracker = TensorTracker(time.perf_counter, time.perf_counter())
    tracker.start(model)
    try:
        tracker.count_flops(True)
        model(ids).float().pow(2).mean().backward()
        counted = tracker.count_flops(False)
    finally:
        tracker.stop()
    assert tracker.count_flops(False) is None  # none under way
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        model(ids).float().pow(2).mean().backward()
    assert counted == counter.get_total_flops() > 0
    # forward (conv, qkv, attention, bmm ×2, mix, head) and its recompute, and backward
    assert counted > 3 * 2 * 2 * 24 * 32 * 64


def test_the_flops_a_run_reports_are_one_step_of_its_model_and_batch(gpt2_train_run):
    """A run's FLOPs a step, counted from its first detailed step as it ran, are what
    torch's flop counter says of one forward and backward of the same model and batch
    (that they come from the step, not a pass after it, is
    ``test_an_after_run_extra_that_fails_loses_nothing``'s: there the model fails every
    forward after the step's)."""
    from torch.utils.flop_counter import FlopCounterMode

    spec = gpt2_train_run.spec
    task = load_task(RunSpec(model=spec.model))
    batch = task.make_batch(spec.batch_size, spec.seq_len, torch.device("cpu"))
    with FlopCounterMode(display=False) as counter:
        task.loss(batch).backward()
    assert gpt2_train_run.worker_summary["flops_per_step"] == counter.get_total_flops() > 0
