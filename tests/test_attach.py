"""Runs from outside: a window that waits for programs, and a controller attached to a
worker someone else started. Real processes, real sockets, the authenticated handshake."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from memviz.core.run import Run
from memviz.core.spec import RunSpec
from memviz.protocol import handshake
from memviz.session.listener import ProgramListener

from .conftest import WORKER_DEADLINE_S

ROOT = Path(__file__).resolve().parent.parent
MEMVIZ = [sys.executable, "-m", "memviz"]
WAIT_MS = WORKER_DEADLINE_S * 1000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening_worker(token: str) -> tuple[subprocess.Popen, str]:
    where = f"tcp:127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([*MEMVIZ, "worker", "--listen", where], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "MEMVIZ_TOKEN": token})
    assert "listening on" in proc.stdout.readline()
    return proc, where


def test_memviz_run_connects_to_a_listening_worker(tmp_path):
    token = handshake.new_token()
    worker, where = _listening_worker(token)
    try:
        summary = tmp_path / "s.json"
        done = subprocess.run([*MEMVIZ, "run", "--connect", where, "--model", "conv-lm",
                               "--steps", "2", "--batch-size", "1", "--seq-len", "32",
                               "--summary", str(summary)], capture_output=True, text=True,
                              timeout=WORKER_DEADLINE_S,
                              env={**os.environ, "MEMVIZ_TOKEN": token})
        assert done.returncode == 0, done.stderr
        result = json.loads(summary.read_text())
        assert result["state"] == "finished" and len(result["steps"]) == 2
        assert result["peak"]["tracked_bytes"] > 0
        assert worker.wait(60) == 0
    finally:
        worker.kill()
        worker.wait()


def test_memviz_run_with_the_wrong_token_is_refused(tmp_path):
    token = handshake.new_token()
    worker, where = _listening_worker(token)
    try:
        done = subprocess.run([*MEMVIZ, "run", "--connect", where, "--steps", "1"],
                              capture_output=True, text=True, timeout=WORKER_DEADLINE_S,
                              env={**os.environ, "MEMVIZ_TOKEN": handshake.new_token()})
        assert done.returncode == 1
        assert "refused" in done.stderr and "Traceback" not in done.stderr
        assert worker.poll() is None  # still waiting for its controller
    finally:
        worker.kill()
        worker.wait()


def test_a_listener_takes_a_recorded_program_and_refuses_a_stranger(tmp_path):
    listener = ProgramListener(next_run_id=lambda: 7)
    try:
        stranger = socket.create_connection(("127.0.0.1", listener.address.port))
        stranger.sendall(b"\x00\x00\x00\x05hello")
        stranger.close()
        script = tmp_path / "train.py"
        script.write_text("import torch\n"
                          "model = torch.nn.Linear(32, 32)\n"
                          "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
                          "for _ in range(2):\n"
                          "    model(torch.randn(4, 32)).sum().backward()\n"
                          "    opt.step(); opt.zero_grad()\n")
        command = listener.command(f"python {script}")
        env_part, _, rest = command.partition(" ")
        key, _, token = env_part.partition("=")
        done = subprocess.run([*MEMVIZ, *rest.split()[1:]], capture_output=True, text=True,
                              timeout=WORKER_DEADLINE_S, env={**os.environ, key: token})
        assert done.returncode == 0, done.stderr
        (session,) = listener.take_arrivals()
        assert session.wait(30)
        run: Run = session.run
        assert run.run_id == 7 and run.state == "finished" and len(run.steps) == 2
        assert run.spec.program.endswith("train.py")
        assert run.model["class"] == "Linear"
        assert any("refused" in text for text in listener.refusals)
    finally:
        listener.close()


def test_the_window_shows_a_program_that_connects(qtbot, tmp_path):
    from memviz.gui.app import make_app
    from memviz.gui.main_window import MainWindow

    make_app()
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    listener = window.external.wait_for_programs()
    command = window.external.dialog.command.text()
    assert command.startswith("MEMVIZ_TOKEN=") and "memviz record --connect tcp:127.0.0.1:" \
        in command
    env_part, _, rest = command.partition(" ")
    key, _, token = env_part.partition("=")
    args = rest.split()[1:rest.split().index("--")]
    proc = subprocess.Popen([*MEMVIZ, *args, "--", "python",
                             str(ROOT / "examples" / "train_loop.py"), "--steps", "2"],
                            env={**os.environ, key: token}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        qtbot.waitUntil(lambda: len(window.runs) == 1, timeout=WAIT_MS)
        (run,) = window.runs.values()
        assert window.current_run() is run  # shown as it arrives
        qtbot.waitUntil(lambda: run.finished, timeout=WAIT_MS)
        assert proc.wait(60) == 0
        window.refresh()
        assert run.state == "finished" and len(run.steps) == 2
        assert "train_loop.py" in window.run_list.item(0).text()
        assert window.timeline.isVisible()
        assert "1 program(s) connected" in window.external.dialog.status.text()
        window.grab().save(str(tmp_path / "program.png"))
    finally:
        proc.kill()
        listener.close()
        window.close()


@pytest.mark.parametrize("role", ["worker"])
def test_the_window_attaches_to_a_listening_worker(qtbot, role):
    from memviz.gui.app import make_app
    from memviz.gui.main_window import MainWindow

    make_app()
    window = MainWindow()
    qtbot.addWidget(window)
    token = handshake.new_token()
    worker, where = _listening_worker(token)
    try:
        window.run_panel.model.setEditText("conv-lm")
        window.run_panel.steps.setValue(1)
        window.run_panel.seq_len.setValue(32)
        window.run_panel.batch_size.setValue(1)
        run = window.external.attach(where, token)
        assert run is not None and run.spec == RunSpec(
            model="conv-lm", steps=1, seq_len=32, batch_size=1)
        qtbot.waitUntil(lambda: run.finished, timeout=WAIT_MS)
        assert run.state == "finished" and len(run.steps) == 1
    finally:
        worker.kill()
        worker.wait()
        window.close()
