"""A snapshot recorded on a real GPU with PyTorch's defaults (context and stacks
"all"), read as well as memviz's own: Python sites under the C++ frames, nothing
invented in its spec, its peak in every export, categories inferred and marked so,
every device, and memviz's own export read back exactly."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

from memviz.core.categories import CATEGORIES, CODE
from memviz.core.diff import profile
from memviz.core.summary import build_summary
from memviz.snapshot import SnapshotError, open_run
from memviz.snapshot.torch_export import write as export_torch

from . import torch_snapshots
from .torch_snapshots import MiB

MEMVIZ = [sys.executable, "-m", "memviz"]


@pytest.fixture(scope="module")
def snapshot_path(tmp_path_factory):
    return torch_snapshots.write(tmp_path_factory.mktemp("gpu") / "step.pickle")


@pytest.fixture(scope="module")
def run(snapshot_path):
    return open_run(snapshot_path)


def test_sites_are_the_first_python_frame_and_cpp_only_on_request(run):
    log = run.tensors
    stacks = [int(s) for s in log.rows.column("stack")]
    # the forward's activation (row 2: after the weights and the batch)
    forward = log.stack_text(stacks[2])
    assert forward[0] == "/usr/lib/python3/site-packages/torch/nn/modules/linear.py:125:forward"
    assert forward[-1] == "/home/user/train.py:41:main" and len(forward) == 4
    native = log.stack_text(stacks[2], native=True)
    assert native[0] == "??:0:torch::unwind::unwind()" and len(native) == 11
    # autograd's device thread has no Python frame: nothing to show but on request
    assert log.stack_text(stacks[4]) == []
    assert "MmBackward0" in " ".join(log.stack_text(stacks[4], native=True))
    sites = profile(run).sites
    assert not any("unwind" in site for site in sites)
    assert any(site.endswith("@ /usr/lib/python3/site-packages/torch/optim/adamw.py:163:"
                             "_init_group") for site in sites)


def test_the_spec_holds_only_what_the_snapshot_says(run):
    assert run.spec.label() == "step.pickle · cuda:0 · PyTorch snapshot"
    summary = build_summary(run)
    assert summary["device"] == "cuda:0" and summary["imported"] == "PyTorch snapshot"
    assert summary["mode"] is None and summary["batch_size"] is None
    assert summary["seq_len"] is None and summary["techniques"] is None


def test_the_peak_is_inside_the_optimizer_step_in_the_summary_and_the_csv(
        run, snapshot_path, tmp_path):
    # 8 MiB of weights + 2 batch + 8 gradient + 16 state + 6 of the step's temporary
    summary = build_summary(run)
    assert summary["peak"]["tracked_bytes"] == 40 * MiB
    assert summary["peak_by_category"]["optimizer_state"] == 16 * MiB
    assert summary["peak_by_category"]["gradient"] == 8 * MiB
    assert summary["max_by_category"]["activation"] == 4 * MiB
    assert summary["tracked_allocations"] == 8  # 7 traced, 1 alive before
    out = tmp_path / "csv"
    done = subprocess.run([*MEMVIZ, "export", str(snapshot_path), "--to", "csv", "-o",
                           str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with open(out / "summary.csv") as f:
        rows = dict(csv.reader(f))
    assert rows["peak.tracked_bytes"] == str(40 * MiB)
    assert float(rows["peak.tracked_t"]) == pytest.approx(0.0009)  # the step's scratch
    assert rows["peak_by_category.optimizer_state"] == str(16 * MiB)
    assert rows["device"] == "cuda:0" and rows["mode"] == ""


def test_categories_are_inferred_from_frames_and_lifetimes_and_say_so(run):
    got = [CATEGORIES[c] for c in run.tensors.rows.column("category")]
    assert got == ["other",  # the weights, alive before recording began
                   "other",  # the batch: made by the user's own line, in no phase
                   "activation", "temporary",  # forward: kept for backward, or not
                   "gradient", "temporary",  # backward: kept past it, or not
                   "optimizer_state", "temporary"]  # the first step's state, its scratch
    assert run.tensors.string("op", int(run.tensors.rows.column("op")[0])) == \
        "(alive before recording began)"
    assert run.category_inferred is not None and run.category_inferred.all()
    # the timeline's bands carry the inferred categories
    samples = run.samples
    assert np.nanmax(samples.column("cat_optimizer_state")) == 16 * MiB
    assert np.nanmax(samples.column("tracked_total")) == 40 * MiB


def test_a_category_the_snapshot_carries_is_measured(tmp_path):
    snapshot = torch_snapshots.one_step()
    for entry in snapshot["device_traces"][0]:
        if entry["action"] == "alloc" and entry["size"] == 2 * MiB:
            entry["category"] = "input"
    run = open_run(torch_snapshots.write(tmp_path / "tagged.pickle", snapshot))
    categories = run.tensors.rows.column("category")
    assert categories[1] == CODE["input"]
    assert not run.category_inferred[1] and run.category_inferred[2]


def test_every_device_with_entries_is_a_run_and_can_be_chosen(run, snapshot_path, tmp_path):
    assert [r.spec.device for r in run.device_runs] == ["cuda:1"]
    other = run.device_runs[0]
    assert list(other.tensors.rows.column("nbytes")) == [512]
    assert open_run(snapshot_path, device=1).spec.device == "cuda:1"
    with pytest.raises(SnapshotError, match=r"no entries for device 5 \(it has cuda:0, "
                                            r"cuda:1\)"):
        open_run(snapshot_path, device=5)
    done = subprocess.run([*MEMVIZ, "export", str(snapshot_path), "--device", "5", "--to",
                           "csv", "-o", str(tmp_path / "x")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "no entries for device 5" in done.stderr


def test_a_memviz_export_imported_again_keeps_categories_modules_and_ops(
        gpt2_train_run, tmp_path):
    original = gpt2_train_run
    path = tmp_path / "export.pickle"
    export_torch(original, path, "torch-pickle")
    back = open_run(path)
    a, b = original.tensors, back.tensors
    assert len(a) == len(b) > 1000
    for column in ("category", "nbytes", "phase", "step"):
        np.testing.assert_array_equal(a.rows.column(column), b.rows.column(column))
    for table in ("module", "op"):
        assert [a.string(table, int(i)) for i in a.rows.column(table)] == \
            [b.string(table, int(i)) for i in b.rows.column(table)]
    assert back.category_inferred is None  # every category measured
    assert build_summary(back)["peak"]["tracked_bytes"] == \
        build_summary(original)["peak"]["tracked_bytes"]


def test_the_segments_and_the_oom_are_the_devices_and_say_what_would_have_helped(run):
    history = run.device_segments
    assert history.source == "measured" and history.segments == 1
    end = history.state_at(1.0)
    assert end.reserved == 64 * MiB and end.allocated == 34 * MiB
    assert end.free_bytes() == (0, 30 * MiB)  # in two inactive splits
    assert end.largest_free == 26 * MiB
    assert np.nanmax(run.samples.column("torch_reserved")) == 64 * MiB
    oom = build_summary(run)["oom"]
    assert oom["request_bytes"] == 28 * MiB and oom["tracked_bytes"] == 34 * MiB
    allocator = oom["allocator"]
    assert allocator["source"] == "measured"
    assert allocator["largest_free_block"] == 26 * MiB
    assert allocator["cached_free_bytes"] == allocator["inactive_split_bytes"] == 30 * MiB
    assert allocator["setting"] == "expandable_segments:True"
    assert allocator["by_category"] == {"other": 10 * MiB, "gradient": 8 * MiB,
                                        "optimizer_state": 16 * MiB}


def test_the_window_shows_the_snapshots_devices_segments_and_inferred_categories(
        snapshot_path, qtbot, tmp_path):
    from memviz.gui.app import dispose
    from memviz.gui.main_window import MainWindow

    window = MainWindow()
    window.resize(1280, 800)
    try:
        run = window.open_snapshot(str(snapshot_path))
        assert [window.run_list.item(i).text() for i in range(window.run_list.count())] == [
            "#2 step.pickle cuda:1 — PyTorch snapshot", "#1 step.pickle cuda:0 — PyTorch snapshot"]
        window.tabs.setCurrentWidget(window.segments_view)
        window.refresh()
        view = window.segments_view
        assert "1 segments over the run, from the device's snapshot (measured)" in \
            view.title.text()
        assert view.shown_blocks() == 6  # weights, batch, gradient, state; two splits
        details = view.details.text()
        assert "largest free block <b>26 MiB</b>" in details
        assert "Out of memory</b> (measured)" in details
        assert "PYTORCH_CUDA_ALLOC_CONF=\u200bexpandable_segments:True" in details
        window.grab().save(str(tmp_path / "snapshot-segments.png"))
        inspector = window.inspector
        inspector.show_allocation(run, 2)
        assert inspector.fields["category"] == \
            "activations (saved for backward) (inferred from its frames and lifetime)"
        assert inspector.fields["stack"].startswith(
            "/usr/lib/python3/site-packages/torch/nn/modules/linear.py:125:forward")
        assert "show its 7 C++ frames" in inspector.toHtml()
        inspector._toggle_native()
        assert inspector.fields["stack"].startswith("??:0:torch::unwind::unwind()")
    finally:
        dispose(window)
