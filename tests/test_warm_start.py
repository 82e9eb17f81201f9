"""The warm parent forks workers and hears of their ends at once, and idles without
spending CPU; a forked run's session ends as soon as its worker has."""

from __future__ import annotations

import time
from dataclasses import replace

import psutil
import pytest

from memviz.core.run import Run
from memviz.core.spec import RunSpec
from memviz.session import WorkerSession


@pytest.fixture(scope="module")
def warm():
    from memviz.session.warm import WarmStart

    parent = WarmStart()
    yield parent
    parent.close()


def test_the_warm_parent_spends_no_cpu_while_it_waits(warm):
    """While a run it forked goes on (a simulated step, about a second of the child's
    CPU), the warm parent waits in its selector: its CPU is the fork's few ms, not a
    loop's spin (a wake-up socket whose other end had closed once made it spin)."""
    process = psutil.Process(warm.proc.pid)
    run = Run(replace(RunSpec(model="gpt2-tiny", steps=2, batch_size=2, seq_len=64),
                      simulate=True, disk_size=False))
    before = process.cpu_times()
    began = time.monotonic()
    worker = WorkerSession(run, warm=warm)
    worker.start()
    assert worker.wait(60) and run.state == "finished"
    took = time.monotonic() - began
    after = process.cpu_times()
    spent = after.user + after.system - before.user - before.system
    assert spent < min(0.2, took / 3), (spent, took)


def test_a_forked_workers_end_is_heard_before_the_parents_next_poll(warm):
    """A child that cannot reach its controller exits at once; its exit (SIGCHLD) wakes
    the parent, which says so long before its 5 s poll would have."""
    from memviz.worker.zygote import POLL_S

    for _ in range(3):
        child = warm.spawn("unix:/nonexistent/memviz.sock", "token")
        assert child.wait(timeout=POLL_S / 5) == 1


def test_a_forked_run_ends_with_its_worker_not_at_a_poll(warm, monkeypatch):
    """With every poll of the controller at 30 s, a simulated run forked from the warm
    parent still starts and ends within seconds: the handshake and the end of the
    worker's stream wake the threads that wait on them."""
    from memviz.protocol import accept
    from memviz.session import session

    monkeypatch.setattr(accept, "POLL_S", 30.0)
    monkeypatch.setattr(session, "RANKS_POLL_S", 30.0)
    run = Run(replace(RunSpec(model="gpt2-tiny", steps=1, batch_size=1, seq_len=32),
                      simulate=True, disk_size=False))
    began = time.monotonic()
    worker = WorkerSession(run, warm=warm)
    worker.start()
    assert worker.wait(25), "the session waited for a poll"
    assert run.state == "finished" and len(run.steps) == 1
    assert time.monotonic() - began < 25


def test_a_warm_parent_started_early_is_waited_for_once_and_closes_before_ready():
    """``WarmStart(wait=False)`` returns at once, its imports under way; the first
    ``wait_ready`` waits for them; one closed before it is ready is stopped, its
    folder gone."""
    from memviz.session.warm import WarmStart

    early = WarmStart(wait=False)
    assert early.conn is None and early.proc.poll() is None
    early.close()
    assert early.proc.poll() is not None and not early._dir.exists()

    parent = WarmStart(wait=False)
    try:
        parent.wait_ready()
        parent.wait_ready()  # once ready, at once
        child = parent.spawn("unix:/nonexistent/memviz.sock", "token")
        assert child.wait(timeout=30) == 1
    finally:
        parent.close()
    assert parent.proc.poll() is not None
