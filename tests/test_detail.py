"""Tracking detail as a policy: the per-op tracker on the steps that need it, the cheap
signals on every step, exact for what they cover. Real workers."""

from __future__ import annotations

import time

import pytest

from memviz.core.detail import DetailPolicy, parse_detail
from memviz.core.run import Run
from memviz.core.spec import RunSpec, SpecError
from memviz.session import WorkerSession
from memviz.session.warm import ForkedProcess, WarmStart

from .conftest import WORKER_DEADLINE_S, run_worker


def test_the_policy_picks_the_first_steps_then_one_in_n():
    policy = parse_detail("first:2,every:5")
    assert [s for s in range(12) if policy.detailed(s)] == [0, 1, 5, 10]
    assert parse_detail("all") == DetailPolicy(everything=True)
    assert [s for s in range(4) if parse_detail("first:1").detailed(s)] == [0]
    for bad in ("some", "first:x", "every:2,sometimes"):
        with pytest.raises(SpecError, match="detail is 'all'"):
            parse_detail(bad)


def test_cheap_steps_count_what_their_signals_cover_exactly():
    """Parameters, gradients, optimizer state and activations are the same bytes with or
    without the per-op tracker; only temporaries need it."""
    kwargs = {"model": "gpt2-tiny", "steps": 3, "batch_size": 2, "seq_len": 64}
    full, _ = run_worker(detail="all", **kwargs)
    cheap, _ = run_worker(detail="first:0", **kwargs)
    a = full.worker_summary["tracking"]["max_by_category"]
    b = cheap.worker_summary["tracking"]["max_by_category"]
    for category in ("parameter", "gradient", "optimizer_state", "activation", "input"):
        assert a[category] == b[category], category
    assert a["temporary"] > 0 and b["temporary"] == 0
    assert [s.detailed for s in cheap.steps] == [False, False, False]
    untracked = [p for p in cheap.phases if p.name == "untracked"]
    assert [p.step for p in untracked] == [0, 1, 2]  # the timeline says so, step by step


def test_the_next_step_in_full_on_request():
    run = Run(RunSpec(model="gpt2-tiny", steps=10_000, batch_size=1, seq_len=32,
                      detail="first:0"))
    session = WorkerSession(run)
    session.start()
    try:
        deadline = time.monotonic() + WORKER_DEADLINE_S
        while len(run.steps) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        asked_after = len(run.steps)
        session.request_detail()
        while not any(s.detailed for s in run.steps) and time.monotonic() < deadline:
            time.sleep(0.05)
        detailed = [s.step for s in run.steps if s.detailed]
        assert len(detailed) == 1 and detailed[0] >= asked_after - 1
    finally:
        session.stop()


def test_workers_forked_warm_run_as_fresh_ones_do():
    warm = WarmStart()
    try:
        runs = []
        for _ in range(2):
            run = Run(RunSpec(model="conv-lm", steps=1, batch_size=1, seq_len=32))
            session = WorkerSession(run, warm=warm)
            session.start()
            assert isinstance(session.proc, ForkedProcess)
            assert session.wait(WORKER_DEADLINE_S)
            assert run.state == "finished" and session.exit_code == 0, run.error
            runs.append(run)
        cold, _ = run_worker(model="conv-lm", steps=1, batch_size=1, seq_len=32)
        same = [r.worker_summary["tracking"]["max_by_category"] for r in (*runs, cold)]
        assert same[0] == same[1] == same[2]  # the same tensors, forked or not
        killed = Run(RunSpec(model="gpt2-tiny", steps=10_000, batch_size=1, seq_len=32))
        session = WorkerSession(killed, warm=warm)
        session.start()
        deadline = time.monotonic() + WORKER_DEADLINE_S
        while not killed.steps and time.monotonic() < deadline:
            time.sleep(0.05)
        session.kill()
        assert session.wait(WORKER_DEADLINE_S) and session.exit_code == -9
    finally:
        warm.close()
