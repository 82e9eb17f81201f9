"""``memviz attach PID``: a training loop already running, tracked from then on and let
go again, its weights, gradients and AdamW state (made before) counted exactly."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from memviz.core.summary import build_summary
from memviz.snapshot import open_run

MEMVIZ = [sys.executable, "-m", "memviz"]
LOOP = """
import os, pathlib, sys, time
import torch

here = pathlib.Path(sys.argv[1])
model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 64))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
steps = 0
while not (here / "stop").exists():
    loss = model(torch.randn(32, 64)).square().mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    steps += 1
    (here / "steps.new").write_text(str(steps))
    os.replace(here / "steps.new", here / "steps")  # read whole, never half written
    time.sleep(0.02)
leaked = sorted(k for k in globals() if "memviz" in k)
print("steps", steps, "leaked", leaked)
"""
PARAMETER_BYTES = 4 * (64 * 256 + 256 + 256 * 64 + 64)


def _wait(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def loop(tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    steps = tmp_path / "steps"
    _wait(lambda: steps.exists() and steps.read_text() and int(steps.read_text()) >= 2)
    yield proc, tmp_path
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_attach_tracks_a_running_loop_and_lets_it_go_on(loop):
    proc, folder = loop
    output = folder / "attached.memviz"
    done = subprocess.run([*MEMVIZ, "attach", str(proc.pid), "-o", str(output), "--steps",
                           "3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"attached to {proc.pid}" in done.stderr
    assert done.stdout.startswith("recorded ") and "optimizer state" in done.stdout
    run = open_run(output)
    summary = build_summary(run)
    assert len(run.steps) >= 3 and summary["optimizer"] == "AdamW"
    assert summary["mode"] == "train"
    peak = summary["peak_by_category"]
    # made before the attach, found on its heap: weights, gradients, AdamW's moments
    # (and one 4-byte step counter a parameter)
    assert peak["parameter"] == PARAMETER_BYTES
    assert peak["optimizer_state"] == 2 * PARAMETER_BYTES + 4 * 4
    assert summary["max_by_category"]["gradient"] == PARAMETER_BYTES
    # let go: the loop goes on stepping, then ends as it would have
    before = int((folder / "steps").read_text())
    _wait(lambda: int((folder / "steps").read_text()) > before + 2)
    (folder / "stop").write_text("")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split()[-1] == "[]"  # nothing of memviz left in its __main__


def test_attach_refuses_what_it_cannot_track_in_one_line(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        for pid, why in ((sleeper.pid, "is not Python"), (2 ** 22 + 1, "no process")):
            done = subprocess.run([*MEMVIZ, "attach", str(pid), "-o",
                                   str(tmp_path / "x.memviz")], capture_output=True,
                                  text=True, timeout=60)
            assert done.returncode == 2 and why in done.stderr
            assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_process_of_ones_own_out_of_reach_is_not_called_another_users():
    """pid 1 here is the caller's own (in a container, root's like the caller), but its
    /proc entries cannot be read: the refusal says that, not "another user"."""
    from memviz.program.inject import InjectError, check_target

    if os.stat("/proc/1").st_uid != os.getuid():
        pytest.skip("pid 1 belongs to another user here")
    try:
        os.readlink("/proc/1/exe")
    except PermissionError:
        pass
    else:
        pytest.skip("pid 1 can be looked into here")
    with pytest.raises(InjectError, match="is yours, but this system does not let memviz"):
        check_target(1)


def test_the_window_attaches_to_a_running_loop_and_follows_it_live(loop, qtbot):
    from memviz.gui.app import dispose
    from memviz.gui.main_window import MainWindow
    from memviz.program.inject import python_processes

    proc, folder = loop
    assert proc.pid in [pid for pid, _ in python_processes()]  # what the dialog offers
    window = MainWindow()
    window.resize(1280, 800)
    try:
        thread = window.external.attach_process(proc.pid)
        assert thread is not None
        qtbot.waitUntil(lambda: any(r.spec.program.startswith(f"attached to {proc.pid}")
                                    for r in window.runs.values()) or
                        "Cannot attach" in window.error_banner.text(), timeout=120_000)
        assert "Cannot attach" not in window.error_banner.text(), window.error_banner.text()
        run = next(iter(window.runs.values()))
        qtbot.waitUntil(lambda: len(run.steps) >= 2, timeout=120_000)
        window.select_run(run.run_id)
        window.refresh()
        assert f"attached to {proc.pid}" in window.run_list.item(0).text()
        assert run.tensors.rows.column("nbytes").sum() > 0
        window.stop_run()  # tracking ends at its next phase edge; the loop goes on
        qtbot.waitUntil(lambda: run.finished, timeout=120_000)
        before = int((folder / "steps").read_text())
        _wait(lambda: int((folder / "steps").read_text()) > before + 2)
        assert proc.poll() is None
    finally:
        dispose(window)
