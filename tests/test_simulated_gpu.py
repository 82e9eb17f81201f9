"""A simulated CUDA run is a device run: the allocator model's figures stand where a
real GPU's would, in the worker's samples and steps, the window's views and What fits."""

from __future__ import annotations

import re

import numpy as np
import pytest

from memviz.compare.sets import parse_set, runnable
from memviz.core.cuda_model import CUBLAS_WORKSPACE_BYTES, CUDA_CONTEXT_BYTES
from memviz.core.spec import RunSpec
from memviz.core.story import story_at
from memviz.core.summary import build_summary

from .conftest import run_worker

SIMULATED_CUDA = dict(model="gpt2-tiny", mode="train", steps=2, batch_size=2, seq_len=64,
                      device="cuda", simulate=True, detail="all")


@pytest.fixture(scope="module")
def simulated_cuda_run():
    run, _ = run_worker(**SIMULATED_CUDA)
    assert run.state == "finished", run.error
    return run


def test_the_worker_samples_the_simulated_device_as_a_real_one(simulated_cuda_run):
    run = simulated_cuda_run
    summary = build_summary(run)
    model = summary["simulated_cuda"]
    samples = run.samples
    allocated = samples.column("torch_allocated")
    reserved = samples.column("torch_reserved")
    process = samples.column("gpu_process_used")
    # the samples carry the allocator model's exact peaks: the same replay, streamed
    assert np.nanmax(allocated) == model["allocated_peak"]
    assert np.nanmax(reserved) == model["reserved_peak"]
    assert np.nanmax(process) == model["process_peak"] == \
        model["reserved_peak"] + CUDA_CONTEXT_BYTES + CUBLAS_WORKSPACE_BYTES
    assert summary["peak"]["gpu_bytes"] == model["process_peak"]
    # each step: its peak allocated (as torch.cuda.max_memory_allocated) and the
    # allocator's state at its end
    assert [s.peak_gpu_bytes for s in run.steps][-1] == model["allocated_peak"]
    assert len(run.cuda_memory) == 2
    end = run.cuda_memory[-1]
    assert end["reserved"] == model["reserved_peak"]  # segments are never given back
    assert 0 < end["allocated"] < end["reserved"]
    # AdamW's state and the weights are what a step leaves allocated, rounded to blocks
    assert end["allocated"] >= end["by_category"]["parameter"] + \
        end["by_category"]["optimizer_state"]


def test_the_story_of_a_simulated_device_adds_up_and_keeps_the_host_apart(
        simulated_cuda_run):
    story = story_at(simulated_cuda_run)
    gpu = story.gpu
    assert gpu is not None and "simulated" in gpu.label
    reserved, context = gpu.parts
    allocated, cached = reserved.parts
    assert reserved.nbytes + context.nbytes == gpu.nbytes
    assert context.nbytes == CUDA_CONTEXT_BYTES + CUBLAS_WORKSPACE_BYTES
    assert 0 < allocated.nbytes <= reserved.nbytes and cached.nbytes >= 0
    # at the moment itself (not the sample before it): every live tensor's block, rounded
    assert allocated.nbytes >= story.cpu.nbytes
    # the host: the simulator's RSS, shown beside the tracked bytes, never subtracted
    cpu = story.cpu
    assert cpu.label == "tracked tensors (simulated)"
    host = cpu.parts[-1]
    assert host.label == "RSS of the simulating process (host)" and host.nbytes > 0
    assert all(p.nbytes is None or p.nbytes >= 0 for p in cpu.parts)


def test_a_simulated_device_set_is_runnable_on_a_machine_without_it():
    base = RunSpec(model="gpt2-tiny", device="cuda", simulate=True)
    assert runnable(base, parse_set("amp")) is None
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:  # measured, it is refused: the device is not here
        assert "cuda" in (runnable(RunSpec(model="gpt2-tiny", device="cuda"),
                                   parse_set("amp")) or "")


def test_the_window_shows_a_simulated_cuda_run_as_a_device_run(qtbot, tmp_path):
    from memviz.gui.app import dispose
    from memviz.gui.axes import format_bytes
    from memviz.gui.main_window import MainWindow
    from memviz.gui.step_table import GPU_COLUMN

    window = MainWindow()
    window.resize(1280, 800)
    try:
        run = window.start_run(RunSpec(**SIMULATED_CUDA))
        qtbot.waitUntil(lambda: run.finished, timeout=180_000)
        assert run.state == "finished", run.error
        window.refresh()
        assert "b2×64 cuda (simulated)" in window.run_list.item(0).text()
        table = window.step_table
        assert table.rowCount() == 2
        peak_gpu = [table.item(r, GPU_COLUMN).text() for r in range(2)]
        assert peak_gpu == [format_bytes(s.peak_gpu_bytes) for s in run.steps]
        assert "—" not in peak_gpu
        timeline = window.timeline
        qtbot.waitUntil(lambda: "sim:torch_reserved" in timeline.legend._items)
        legend = timeline.legend._items
        assert legend["sim:torch_reserved"].text() == "torch reserved (simulated)"
        # the simulating process's RSS is its own entry, hidden until asked for
        assert "host:rss" in legend and "rss" not in legend
        assert not legend["host:rss"].checkState().value
        assert not timeline._layers[run.run_id].curves["host:rss"].isVisible()
        window.grab().save(str(tmp_path / "simulated-cuda.png"))
        # the Segments view: the allocator model's segments, and a predicted OOM
        window.tabs.setCurrentWidget(window.segments_view)
        window.refresh()
        view = window.segments_view
        model = build_summary(run)["simulated_cuda"]
        assert f"{model['segments']} segments over the run, from the allocator's model " \
               "(simulated)" in view.title.text()
        assert view.shown_blocks() > 10
        assert "Predicted" not in view.details.text()
        view.device.setValue((model["process_peak"] >> 20) - 1)
        qtbot.waitUntil(lambda: "Predicted on a" in view.details.text())
        assert "(simulated)" in view.details.text() and "request" in view.details.text()
        window.grab().save(str(tmp_path / "simulated-segments.png"))
    finally:
        dispose(window)


def test_what_fits_answers_a_simulated_device_with_a_figure(qtbot):
    from memviz.gui.fit_panel import FitPanel

    base = RunSpec(**{**SIMULATED_CUDA, "batch_size": 1})
    panel = FitPanel(lambda: base)
    qtbot.addWidget(panel)
    # the CUDA context and cuBLAS workspace are assumed at 532 MiB: 600 MiB leaves
    # room for a few sequences of gpt2-tiny and not for many
    panel.limit.setValue(600)
    panel.start(sets=False)
    qtbot.waitUntil(lambda: not panel.running, timeout=600_000)
    panel._show()
    text = panel.result.text()
    found = re.fullmatch(r"Largest batch under 600 MiB: (\d+), ([\d.]+) MiB simulated "
                         r"\((\d+) did not fit: ([\d.]+) MiB simulated\); simulated on "
                         r"cuda, not confirmed by real runs", text)
    assert found, text
    largest, fits, refused, over = found.groups()
    # the boundary: the largest batch's simulated peak is under the limit, the next's over
    assert int(refused) == int(largest) + 1 and float(fits) <= 600 < float(over)


def test_the_simulated_segments_and_a_predicted_oom(simulated_cuda_run):
    from memviz.core.segments import history_of, predict_oom

    run = simulated_cuda_run
    model = build_summary(run)["simulated_cuda"]
    history = history_of(run)
    assert history is not None and history.source == "simulated"
    assert history.segments == model["segments"]
    assert int(history.seg_size.sum()) == model["reserved_peak"]
    assert (history.block_segment >= 0).all()  # every allocation has its block
    # blocks live together never overlap within a segment
    t_peak = build_summary(run)["peak"]["tracked_t"]
    state = history.state_at(t_peak)
    for blocks in state.blocks_by_segment().values():
        ends = [o + n for o, n, _ in blocks]
        assert all(b[0] >= e for b, e in zip(blocks[1:], ends, strict=False))
    whole, split = state.free_bytes()
    assert state.allocated + whole + split == state.reserved
    # a device just large enough: nothing fails; one byte less than the last segment
    # needs: the request that reserved it fails, explained
    assert predict_oom(history, run.tensors, model["process_peak"]) is None
    oom = predict_oom(history, run.tensors, model["process_peak"] - 1)
    assert oom is not None and oom["source"] == "predicted"
    assert oom["reserved_bytes"] == model["reserved_peak"] - int(history.seg_size[-1])
    assert oom["request_bytes"] > oom["largest_free_block"]
    assert sum(oom["by_category"].values()) > 0
