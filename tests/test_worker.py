"""A real worker process on the default model: what the stream must contain."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil

from memviz.core.run import Run
from memviz.core.spec import RunSpec
from memviz.session import WorkerSession

from .conftest import WORKER_DEADLINE_S, run_worker

GPT2_TINY_PARAMETERS = 3_487_232  # 4 layers × 256, byte vocabulary, tied head


def test_samples_arrive_with_increasing_timestamps(gpt2_train_run: Run):
    t = np.asarray(gpt2_train_run.samples.column("t"))
    assert len(t) >= 10
    assert np.all(np.diff(t) > 0)


def test_rss_exceeds_parameter_bytes(gpt2_train_run: Run):
    model = gpt2_train_run.model
    assert model["parameters"] == GPT2_TINY_PARAMETERS
    assert model["parameter_bytes"] == GPT2_TINY_PARAMETERS * 4  # float32, tied head once
    rss = np.asarray(gpt2_train_run.samples.column("rss"))
    # weights + gradients + two AdamW states are all live at the end of a step
    assert rss.max() > 4 * model["parameter_bytes"]
    peak = np.asarray(gpt2_train_run.samples.column("peak_rss"))
    assert np.nanmax(peak) >= rss.max()


def test_uss_is_below_rss_and_system_memory_is_above(gpt2_train_run: Run):
    s = gpt2_train_run.samples
    rss, uss, system = (np.asarray(s.column(c)) for c in ("rss", "uss", "system_used"))
    assert np.all(uss <= rss)
    assert np.all(system >= uss)


def test_phases_come_in_order_within_each_step(gpt2_train_run: Run):
    steps = {}
    for phase in gpt2_train_run.phases:
        steps.setdefault(phase.step, []).append(phase)
    assert [p.name for p in steps[-1]] == ["load"]
    for step in (0, 1):
        names = [p.name for p in steps[step]]
        assert names == ["forward", "backward", "optimizer"]
        for earlier, later in zip(steps[step], steps[step][1:], strict=False):
            assert earlier.begin < earlier.end <= later.begin < later.end


def test_steps_have_finite_falling_loss_and_real_peaks(gpt2_train_run: Run):
    steps = gpt2_train_run.steps
    assert [s.step for s in steps] == [0, 1]
    assert all(math.isfinite(s.loss) for s in steps)
    assert steps[0].loss < math.log(256) + 0.5  # roughly uniform over bytes at the start
    assert steps[1].loss < steps[0].loss  # the corpus is real text: one step already helps
    assert all(s.peak_rss_bytes > 4 * GPT2_TINY_PARAMETERS * 4 for s in steps)
    assert all(s.tokens == 4 * 256 for s in steps)
    assert all(s.peak_gpu_bytes is None for s in steps)


def test_no_gpu_is_a_state_not_an_error(gpt2_train_run: Run):
    env = gpt2_train_run.environment
    assert env["torch"].startswith("2.")
    if not env["nvml"]["available"]:
        assert "GPU" in env["nvml"]["reason"] or "nvidia" in env["nvml"]["reason"].lower()
    assert np.all(np.isnan(gpt2_train_run.samples.column("torch_allocated")))


def test_infer_and_generate_workloads():
    run, _ = run_worker(model="gpt2-tiny", mode="infer", steps=2, batch_size=2, seq_len=64)
    assert run.state == "finished", run.error
    assert [p.name for p in run.phases if p.step == 0] == ["forward"]
    assert all(math.isfinite(s.loss) for s in run.steps)
    run, _ = run_worker(model="llama-tiny", mode="generate", steps=1, batch_size=2, seq_len=16,
                        max_new_tokens=8)
    assert run.state == "finished", run.error
    assert [p.name for p in run.phases if p.step == 0] == ["generate"]
    assert run.steps[0].tokens == 2 * 8
    assert run.steps[0].loss is None


def _long_run_after_first_step() -> tuple[Run, WorkerSession]:
    """A real worker on a run far too long to finish, once its first step is done."""
    run = Run(RunSpec(model="gpt2-tiny", steps=10_000, batch_size=1, seq_len=32))
    session = WorkerSession(run)
    session.start()
    deadline = time.monotonic() + WORKER_DEADLINE_S
    while not run.steps and time.monotonic() < deadline and not run.finished:
        time.sleep(0.05)
    assert run.steps, run.log[-5:]
    return run, session


def test_stop_ends_the_run_and_the_process_promptly():
    from memviz.worker.main import STOP_ASKED

    run, session = _long_run_after_first_step()
    session.request_stop()
    assert session.wait(WORKER_DEADLINE_S)
    assert run.state == "stopped" and run.end_reason == "stopped"
    # promptly: at the next phase boundary after the worker heard it, so within a step's
    # time of that moment (on the worker's own clock: a loaded machine slows both alike)
    asked = next(line.t for line in run.log if line.text == STOP_ASKED)
    ended = run.worker_summary and max(s.t for s in run.steps)
    longest = max(s.seconds for s in run.steps)
    assert ended - asked <= longest + 0.05
    assert session.exit_code == 0
    assert not psutil.pid_exists(session.pid)


def test_a_killed_worker_is_reported_with_what_was_measured_kept():
    run, session = _long_run_after_first_step()
    measured = len(run.samples)
    os.kill(session.pid, signal.SIGKILL)
    assert session.wait(15)
    assert run.state == "failed"
    assert run.error["kind"] == "crash"
    assert "SIGKILL" in run.error["message"]
    assert len(run.samples) >= measured > 0


def test_worker_refuses_to_listen_on_a_public_address_unless_asked():
    out = subprocess.run(
        [sys.executable, "-m", "memviz", "worker", "--listen", "tcp:0.0.0.0:0"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "MEMVIZ_TOKEN": "t"},
    )
    assert out.returncode != 0
    assert "not a loopback address" in out.stderr
