"""``memviz record`` and the signals a terminal sends: a Ctrl-C reaches the program as
it would without memviz, and a ``record`` that dies does not leave its program
running; the file keeps every finished step either way."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil
import pytest

from memviz.snapshot import open_run

from .conftest import WORKER_DEADLINE_S
from .test_program_tracking import MEMVIZ, ROOT, _script, _steps_in

LOOP = """
    import sys
    import torch
    model = torch.nn.Linear(64, 64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    {body}
"""
FOREVER = """while True:
        model(torch.randn(8, 64)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()"""
CATCHES = """try:
        while True:
            model(torch.randn(8, 64)).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
    except KeyboardInterrupt:
        print("interrupted: saving", flush=True)
        sys.exit(0)"""


def _until_steps(path, record: subprocess.Popen, count: int) -> None:
    deadline = time.monotonic() + WORKER_DEADLINE_S
    while _steps_in(path) < count and time.monotonic() < deadline and record.poll() is None:
        time.sleep(0.1)
    assert _steps_in(path) >= count, record.stderr.read() if record.poll() is not None else ""


def _record_in_a_terminal(tmp_path, body: str) -> tuple[subprocess.Popen, object]:
    """``memviz record`` of a loop, in a process group of its own, as a terminal's
    foreground job is: a Ctrl-C there is a SIGINT to the whole group."""
    script = _script(tmp_path, "loop.py", LOOP.format(body=body))
    out = tmp_path / "loop.memviz"
    record = subprocess.Popen([*MEMVIZ, "record", "-o", str(out), "--", "python", script],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT, start_new_session=True)
    return record, out


@pytest.mark.parametrize("body, code, says, state", [
    (FOREVER, 128 + signal.SIGINT, "KeyboardInterrupt", "stopped"),  # Python's own: 130
    (CATCHES, 0, "interrupted: saving", "finished")])  # the program's handler ran
def test_ctrl_c_reaches_the_program_and_record_ends_as_it_did(tmp_path, body, code, says,
                                                              state):
    record, out = _record_in_a_terminal(tmp_path, body)
    try:
        _until_steps(out, record, 2)
        os.killpg(record.pid, signal.SIGINT)  # the terminal's Ctrl-C
        stdout, stderr = record.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(record.pid, signal.SIGKILL)
        raise AssertionError(f"the Ctrl-C was lost: {record.communicate()[1][-2000:]}") \
            from None
    finally:
        if record.poll() is None:
            os.killpg(record.pid, signal.SIGKILL)
    assert record.returncode == code, stderr
    assert says in stdout + stderr
    back = open_run(out)
    assert len(back.steps) >= 2 and back.state == state


def test_a_killed_record_stops_its_program_and_keeps_every_finished_step(tmp_path):
    record, out = _record_in_a_terminal(tmp_path, FOREVER)
    try:
        _until_steps(out, record, 3)
        (program,) = psutil.Process(record.pid).children()
        record.kill()  # SIGKILL: no chance to clean up
        record.wait(30)
        gone, alive = psutil.wait_procs([program], timeout=30)
        assert gone and not alive, "the program outlived memviz record"
    finally:
        if record.poll() is None:
            os.killpg(record.pid, signal.SIGKILL)
    back = open_run(out)  # readable, with every step it had committed
    assert len(back.steps) >= 3
    assert all(step is not None for step in back.steps)


def test_record_started_with_sigint_ignored_leaves_it_ignored_for_the_program(tmp_path):
    """A job started with Ctrl-C ignored (``nohup``, a background job of a
    non-interactive shell) keeps it so, memviz or not."""
    script = _script(tmp_path, "probe.py", """
        import signal
        print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, flush=True)
    """)
    done = subprocess.run([*MEMVIZ, "record", "-o", str(tmp_path / "p.memviz"), "--",
                           "python", script], capture_output=True, text=True, cwd=ROOT,
                          timeout=WORKER_DEADLINE_S,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    plain = subprocess.run([*MEMVIZ, "record", "-o", str(tmp_path / "q.memviz"), "--",
                            "python", script], capture_output=True, text=True, cwd=ROOT,
                           timeout=WORKER_DEADLINE_S)
    assert plain.stdout.strip() == "False"  # and otherwise Python's own handler is there
