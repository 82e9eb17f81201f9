"""Memory attributed to the user's lines: a real program recorded with stacks, its live
bytes at the peak by call path (the user's frames, the module, the op), in the core and
in the window's Call sites view."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from memviz.core.analysis import moment, tracked_peak_time
from memviz.core.call_sites import NO_STACK, call_sites, is_library_frame
from memviz.core.categories import CODE
from memviz.snapshot import open_run

from .conftest import run_worker

PROGRAM = '''
import torch


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(64, 256)
        self.down = torch.nn.Linear(256, 64)

    def forward(self, x):
        hidden = torch.relu(self.up(x))  # line 12: kept for backward
        return self.down(hidden)


def train_step(model, optimizer):
    loss = model(torch.randn(32, 64)).square().mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


model = torch.nn.Sequential(Block(), Block())
optimizer = torch.optim.AdamW(model.parameters())
for _ in range(2):
    train_step(model, optimizer)
'''


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sites")
    script = folder / "user_program.py"
    script.write_text(PROGRAM)
    output = folder / "run.memviz"
    done = subprocess.run([sys.executable, "-m", "memviz", "record", "--track",
                           "tensors+stacks", "-o", str(output), "--", sys.executable,
                           str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return open_run(output), str(script)


def test_the_call_tree_splits_the_live_bytes_by_the_users_lines(recorded):
    run, script = recorded
    t, peak = tracked_peak_time(run.tensors)
    rows = run.tensors.live_at(t)
    sites = call_sites(run, rows)
    assert sites.has_stacks
    assert sites.root.total == moment(run.tensors, t).total == peak
    assert sites.root.count == len(rows)
    # the tree's children add up at every level
    stack = [sites.root]
    while stack:
        node = stack.pop()
        if node.children:
            assert sum(c.total for c in node.children.values()) + sum(
                int(run.tensors.rows.column("nbytes")[g].sum()) for g in node.groups) == \
                node.total
            stack.extend(node.children.values())
    # no installed package's frame unless asked for; the user's own lines are there: at
    # the peak (inside AdamW's step) the optimizer line holds the most
    frames = [line.frame for line in sites.frames]
    assert not any(is_library_frame(f) for f in frames)
    assert frames[0] == f"{script}:26:<module>"  # the loop, over every step's bytes
    assert sites.frames[1].frame == f"{script}:19:train_step"  # optimizer.step()
    # as backward begins, line 12's activations are live, kept for backward
    backward = next(p.begin for p in run.phases if p.name == "backward")
    early = call_sites(run, run.tensors.live_at(backward))
    line12 = next(line for line in early.frames if line.frame.startswith(f"{script}:12:"))
    chosen = early.rows_of_frame(line12.frame)
    assert int(run.tensors.rows.column("nbytes")[chosen].sum()) == line12.total > 0
    assert CODE["activation"] in set(run.tensors.rows.column("category")[chosen].tolist())
    with_library = call_sites(run, rows, library=True)
    assert with_library.root.total == sites.root.total


def test_library_frames_are_told_from_the_users():
    assert is_library_frame("/venv/lib/python3.11/site-packages/transformers/models/gpt2/"
                            "modeling_gpt2.py:405:forward")
    assert is_library_frame("/usr/lib/python3.11/runpy.py:88:_run_code")
    assert is_library_frame("/usr/lib/python3/dist-packages/numpy/core/a.py:3:f")
    assert is_library_frame("<frozen runpy>:198:_run_module_as_main")
    assert not is_library_frame("/home/me/project/train.py:41:main")
    assert not is_library_frame("/home/me/lib/python3_tools/x.py:1:f")


def test_a_run_without_stacks_splits_by_module_and_op():
    run, _ = run_worker(model="gpt2-tiny", steps=1, batch_size=2, seq_len=32, track="tensors")
    t, peak = tracked_peak_time(run.tensors)
    sites = call_sites(run, run.tensors.live_at(t))
    assert not sites.has_stacks and sites.root.total == peak
    assert list(sites.root.children) == [NO_STACK]
    modules = sites.root.children[NO_STACK].children
    assert "transformer.h.0.attn.c_attn" in modules


def test_the_call_sites_view_draws_the_tree_and_a_click_shows_those_allocations(
        recorded, qtbot, tmp_path):
    from memviz.gui.app import dispose
    from memviz.gui.main_window import MainWindow

    run, _ = recorded
    window = MainWindow()
    window.resize(1280, 800)
    try:
        opened = window.open_snapshot(run.snapshot_path or "")
        assert opened is not None
        window.select_run(opened.run_id)
        window.tabs.setCurrentWidget(window.call_sites_view)
        window.refresh()
        view = window.call_sites_view
        t, peak = tracked_peak_time(opened.tensors)  # where the window puts the cursor
        assert f"at t = {t:.3f} s" in view.title.text()
        assert view.sites.root.total == peak
        assert view.table.rowCount() > 3
        top = view.box_names(0)
        assert top and all(not is_library_frame(name) for name in top)
        window.grab().save(str(tmp_path / "call-sites.png"))
        # a click on the first box: its allocations, alone, in the Allocations view
        node = view.box_at(0.001, 0.5)
        assert node is not None
        chosen = []
        view.rows_chosen.connect(chosen.append)
        view._row_clicked(0, 0)
        assert len(chosen) == 1
        keep = window._keep
        assert keep is not None and int(keep.sum()) == len(np.unique(chosen[0]))
        assert window.tabs.currentIndex() == 1
    finally:
        dispose(window)
