"""Every frame after the handshake is the proven peer's: a relay, a replay, a reorder
or a cut cannot drive a worker; tokens memviz did not make are refused; strangers
that speak and stall cannot keep the owner out.

The peers are real: a listening worker process, a relay process between the owner's
``memviz run --connect`` and that worker, sockets that behave as strangers.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from memviz.core.spec import RunSpec
from memviz.protocol import handshake
from memviz.protocol.framing import FrameError, encode_frame
from memviz.protocol.token import TokenError, check_strength, new_token
from memviz.protocol.transport import AuthenticationError, Connection, ConnectionClosed

from .conftest import WORKER_DEADLINE_S
from .test_listening_worker import _drive, _free_port, _listening_worker

ROOT = Path(__file__).resolve().parents[1]


def _canary_factory(tmp_path: Path) -> tuple[str, Path]:
    canary = tmp_path / "canary"
    factory = tmp_path / "factory.py"
    factory.write_text(
        "import pathlib\n"
        "def build():\n"
        f"    pathlib.Path({str(canary)!r}).write_text('ran')\n"
        "    import torch\n"
        "    return torch.nn.Linear(4, 4)\n")
    return f"{factory}:build", canary


def test_a_relay_gets_no_start_through_and_the_worker_waits_on(tmp_path):
    token = new_token()
    worker, worker_port = _listening_worker(env_token=token)
    relay_port = _free_port()
    factory, canary = _canary_factory(tmp_path)
    relay = subprocess.Popen([sys.executable, "-m", "tests.peers.relay", str(relay_port),
                              str(worker_port), factory], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert relay.stdout.readline() == "ready\n", relay.stderr.read()
        owner = subprocess.run(
            [sys.executable, "-m", "memviz", "run", "--connect", f"tcp:127.0.0.1:{relay_port}",
             "--model", "conv-lm", "--steps", "1", "--batch-size", "1", "--seq-len", "16"],
            capture_output=True, text=True, timeout=WORKER_DEADLINE_S,
            env={**os.environ, "MEMVIZ_TOKEN": token})
        assert relay.wait(60) == 0
        assert relay.stdout.read() == "worker hung up\n"
        assert not canary.exists()  # the relay's factory never ran
        # the owner: a non-zero exit and one line, no traceback
        assert owner.returncode != 0
        owner_lines = [line for line in owner.stderr.splitlines() if line.strip()]
        assert len(owner_lines) == 1 and "Traceback" not in owner.stderr, owner.stderr
        # the worker refused the relay in one line and still waits for its owner
        assert worker.poll() is None
        run = _drive(worker_port, token, RunSpec(model="conv-lm", steps=1, batch_size=1,
                                                 seq_len=16))
        assert run.state == "finished" and len(run.steps) == 1
        assert worker.wait(60) == 0
        refused = [line for line in worker.stderr.read().splitlines()
                   if "after its handshake" in line]
        assert len(refused) == 1 and "failed its check" in refused[0], refused
        assert token not in refused[0]
    finally:
        for proc in (relay, worker):
            proc.kill()
            proc.wait()


class _Middle:
    """Two connections that ran a real handshake with each other through a man in the
    middle (this test), which then holds the raw frames of each direction."""

    def __init__(self) -> None:
        token = new_token()
        a, self.to_a = socket.socketpair()
        b, self.to_b = socket.socketpair()
        self.controller, self.worker = Connection(a), Connection(b)
        done: list = []
        thread = threading.Thread(
            target=lambda: done.append(handshake.perform(self.worker, token, "worker")))
        thread.start()
        forward = [threading.Thread(target=self._pass, args=(src, dst, 2))
                   for src, dst in ((self.to_a, self.to_b), (self.to_b, self.to_a))]
        for t in forward:
            t.start()
        handshake.perform(self.controller, token, "controller")
        thread.join(10)
        for t in forward:
            t.join(10)
        assert done and self.controller.secured and self.worker.secured

    @staticmethod
    def _read(sock: socket.socket) -> bytes:
        from tests.peers.relay import read_frame

        return read_frame(sock)

    def _pass(self, src: socket.socket, dst: socket.socket, frames: int) -> None:
        for _ in range(frames):
            dst.sendall(self._read(src))

    def sent_by_controller(self, count: int) -> list[bytes]:
        return [self._read(self.to_a) for _ in range(count)]


def _frames_sent(middle: _Middle, count: int) -> list[bytes]:
    for i in range(count):
        middle.controller.send([{"type": "log", "t": float(i), "level": "info",
                                 "text": f"frame {i}"}])
    return middle.sent_by_controller(count)


def test_frames_passed_on_as_they_were_sent_are_read():
    middle = _Middle()
    for frame in _frames_sent(middle, 3):
        middle.to_b.sendall(frame)
    texts = [middle.worker.receive()[0]["text"] for _ in range(3)]
    assert texts == ["frame 0", "frame 1", "frame 2"]


@pytest.mark.parametrize("tamper", ["replayed", "reordered", "altered", "injected",
                                    "reflected"])
def test_a_frame_not_as_the_peer_sent_it_closes_the_connection(tamper):
    middle = _Middle()
    first, second = _frames_sent(middle, 2)
    if tamper == "replayed":
        middle.to_b.sendall(first + first)
    elif tamper == "reordered":
        middle.to_b.sendall(second + first)
    elif tamper == "altered":
        middle.to_b.sendall(first[:-40] + bytes([first[-40] ^ 1]) + first[-39:])
    elif tamper == "injected":  # a frame of its own, with a guessed tag
        middle.to_b.sendall(encode_frame([{"type": "stop"}]) + secrets.token_bytes(32))
    else:  # a frame of the controller's direction sent back to it as the worker's
        middle.to_a.sendall(first)
        with pytest.raises(AuthenticationError, match="failed its check"):
            middle.controller.receive()
        return
    received: list = []
    with pytest.raises((AuthenticationError, FrameError), match=r"failed its check|tag"):
        while True:
            received.extend(middle.worker.receive())
    if tamper == "replayed":
        assert [m["text"] for m in received] == ["frame 0"]  # the replay is what failed


def test_a_frame_cut_short_is_an_error_not_a_message():
    middle = _Middle()
    (frame,) = _frames_sent(middle, 1)
    middle.to_b.sendall(frame[:-10])
    middle.to_b.close()
    with pytest.raises(FrameError, match="truncated"):
        middle.worker.receive()


def test_a_connection_ended_between_frames_is_a_clean_end():
    middle = _Middle()
    middle.to_b.close()
    with pytest.raises(ConnectionClosed):
        middle.worker.receive()


# -- tokens -------------------------------------------------------------------------

@pytest.mark.parametrize("guessable", [
    "Password123Password123", "0123456789abcdef0123456789abcdef",
    "Tr0ub4dor&3Tr0ub4dor&3", "aB3" * 20, secrets.token_hex(32),  # random, but no format
    "memviz-" + "0" * 64 + "-00000000"])
def test_tokens_memviz_did_not_make_are_refused(guessable):
    with pytest.raises(TokenError, match="memviz token --write"):
        check_strength(guessable)


def test_a_token_with_a_valid_checksum_but_a_pattern_is_refused():
    from memviz.protocol.token import PREFIX, _checksum

    pattern = "01" * 32
    with pytest.raises(TokenError):
        check_strength(f"{PREFIX}{pattern}-{_checksum(pattern)}")
    made = new_token()
    assert check_strength(made) == made
    cut = made[:-1]
    with pytest.raises(TokenError):
        check_strength(cut)


# -- admission ------------------------------------------------------------------------

def _stranger(port: int, speaks: bool, stop: threading.Event, count: list,
              arrived: threading.Condition) -> None:
    """Connects, says a valid hello (or nothing), stalls, and reconnects when cut off;
    each connection is counted in ``count`` and told to ``arrived``."""
    while not stop.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            continue
        with arrived:
            count.append(1)
            arrived.notify_all()
        try:
            if speaks:
                sock.sendall(encode_frame([{"type": "hello", "protocol": 3, "role":
                                            "controller", "nonce": secrets.token_hex(16)}]))
            sock.settimeout(0.2)
            while not stop.is_set():
                try:
                    if not sock.recv(4096):
                        break
                except TimeoutError:
                    continue
        except OSError:
            pass
        finally:
            sock.close()


def test_the_owner_gets_in_every_try_while_strangers_speak_stall_and_hammer():
    """50 strangers that send a valid hello and stall, 50 that stay silent, all
    reconnecting the moment they are cut off: the owner gets in on every try."""
    from memviz.protocol.accept import accept_authenticated

    token = new_token()
    server = socket.create_server(("127.0.0.1", 0), backlog=256)
    port = server.getsockname()[1]
    stop, count, refused, arrived = threading.Event(), [], [], threading.Condition()
    strangers = [threading.Thread(target=_stranger,
                                  args=(port, i % 2 == 0, stop, count, arrived), daemon=True)
                 for i in range(100)]
    waits = []
    try:
        for attempt in range(6):
            accepted: list = []
            listener = threading.Thread(target=lambda into=accepted: into.append(
                accept_authenticated(server, token, "worker", refused=refused.append,
                                     timeout=60)), daemon=True)
            listener.start()
            if attempt == 0:
                for thread in strangers:
                    thread.start()
            wanted = len(count) + 100  # until they hold their places, and keep coming
            with arrived:
                assert arrived.wait_for(lambda n=wanted: len(count) >= n, timeout=60)
            began = time.monotonic()
            owner = Connection(socket.create_connection(("127.0.0.1", port), timeout=10))
            handshake.perform(owner, token, "controller")
            waits.append(time.monotonic() - began)
            listener.join(30)
            assert accepted and accepted[0] is not None
            accepted[0][0].close()
            owner.close()
    finally:
        stop.set()
        server.close()
    assert len(waits) == 6 and max(waits) < 5.0, waits
    assert len(count) >= 600  # they hammered throughout
