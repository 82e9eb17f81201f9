"""``memviz worker --listen``: only a controller that proves the token drives it.

Every peer here is real: a worker process listening on loopback, and sockets
that behave as a port scanner, an idle stranger, a guesser and a flooder would.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time

import pytest

from memviz.core.run import Run
from memviz.core.spec import RunSpec
from memviz.protocol import handshake
from memviz.protocol.accept import ACCEPT_DEADLINE_S
from memviz.protocol.framing import decode_payload, encode_frame
from memviz.protocol.transport import Connection, ConnectionClosed

from .conftest import WORKER_DEADLINE_S


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening_worker(env_token: str | None = None, extra: list[str] | None = None,
                      token_file: str | None = None) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = {**os.environ}
    env.pop("MEMVIZ_TOKEN", None)
    if env_token is not None:
        env["MEMVIZ_TOKEN"] = env_token
    command = [sys.executable, "-m", "memviz", "worker", "--listen", f"tcp:127.0.0.1:{port}",
               *(["--token-file", token_file] if token_file else []), *(extra or [])]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline()
    assert "listening on tcp:127.0.0.1:" in line, proc.stderr.read()
    return proc, port


def _read_frame(sock: socket.socket) -> list[dict]:
    sock.settimeout(30)
    header = b""
    while len(header) < 4:
        header += sock.recv(4 - len(header))
    (length,) = struct.unpack(">I", header)
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return decode_payload(body)


def _drive(port: int, token: str, spec: RunSpec) -> Run:
    conn = Connection(socket.create_connection(("127.0.0.1", port), timeout=30))
    handshake.perform(conn, token, "controller")
    conn.sock.settimeout(WORKER_DEADLINE_S)
    conn.send([{"type": "start", "spec": spec.to_dict()}])
    run = Run(spec)
    try:
        while True:
            run.apply_all(conn.receive())
    except ConnectionClosed:
        pass
    return run


def _peak_rss(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the worker hung up on this socket (waits for the verdict)."""
    sock.settimeout(60)
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    return True


def test_strangers_neither_learn_the_token_nor_lock_out_the_controller():
    token = handshake.new_token()
    proc, port = _listening_worker(env_token=token)
    try:
        rss_before = _peak_rss(proc.pid)
        # 1. an idle stranger: connects and says nothing, and stays
        idle = socket.create_connection(("127.0.0.1", port))
        said = _read_frame(idle)
        assert said == [{"type": "hello", "protocol": handshake.PROTOCOL_VERSION,
                         "nonce": said[0]["nonce"], "role": "worker"}]
        # 2. a guesser: a well-formed handshake with the wrong token
        guesser = Connection(socket.create_connection(("127.0.0.1", port), timeout=30))
        with pytest.raises((handshake.AuthenticationError, ConnectionClosed, OSError)):
            handshake.perform(guesser, "not-the-token", "controller")
        # 3. a flooder: announces a 32 MiB frame of empty maps
        flood = socket.create_connection(("127.0.0.1", port))
        _read_frame(flood)
        flood.sendall(struct.pack(">I", 32 << 20) + b"\xdf\x00\x00\x00\x00" * 4096)
        assert _closed_by_peer(flood)
        assert _peak_rss(proc.pid) - rss_before < 8 << 20  # read 4 KiB at most, then hung up
        # 4. a port scanner: connects and hangs up at once
        socket.create_connection(("127.0.0.1", port)).close()
        # 5. a peer replaying the hello it was sent, as a controller
        mirror = socket.create_connection(("127.0.0.1", port))
        hello = _read_frame(mirror)[0]
        mirror.sendall(encode_frame([{**hello, "role": "controller"}]))
        mirror.sendall(encode_frame([{"type": "proof", "mac": "0" * 64,
                                      "memviz_version": "x"}]))
        assert _closed_by_peer(mirror)
        # the real controller is served while the idle stranger still holds its socket
        run = _drive(port, token, RunSpec(model="conv-lm", steps=1, batch_size=1, seq_len=16))
        assert run.state == "finished" and len(run.steps) == 1
        assert proc.wait(60) == 0
        err = proc.stderr.read()
        assert err.count("refused") >= 4, err
        assert token not in err
        idle.close()
    finally:
        proc.kill()
        proc.wait()


def test_an_idle_stranger_is_cut_off_by_the_handshake_deadline():
    token = handshake.new_token()
    proc, port = _listening_worker(env_token=token)
    try:
        idle = socket.create_connection(("127.0.0.1", port))
        _read_frame(idle)
        started = time.monotonic()
        assert _closed_by_peer(idle)
        waited = time.monotonic() - started
        assert waited >= ACCEPT_DEADLINE_S * 0.9  # not before its deadline
        assert proc.poll() is None  # still waiting for its controller
    finally:
        proc.kill()
        proc.wait()


def test_a_token_on_the_command_line_is_refused():
    out = subprocess.run([sys.executable, "-m", "memviz", "worker", "--listen",
                          "tcp:127.0.0.1:0", "--token", "secret"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "readable by every user" in out.stderr


def test_a_token_file_must_be_private(tmp_path):
    path = tmp_path / "token"
    path.write_text("secret\n")
    path.chmod(0o644)
    out = subprocess.run([sys.executable, "-m", "memviz", "worker", "--listen",
                          "tcp:127.0.0.1:0", "--token-file", str(path)],
                         capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "MEMVIZ_TOKEN"})
    assert out.returncode == 2
    assert "readable by others" in out.stderr and "chmod 600" in out.stderr


def test_a_private_token_file_serves_a_controller(tmp_path):
    token = handshake.new_token()
    path = tmp_path / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    proc, port = _listening_worker(token_file=str(path))
    try:
        run = _drive(port, token, RunSpec(model="conv-lm", steps=1, batch_size=1, seq_len=16))
        assert run.state == "finished"
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("weak", ["secret", "t" * 64, "0123456789abcdef",
                                  "correct horse battery", "Password123Password123"])
def test_a_token_too_weak_to_be_safe_is_refused(weak, tmp_path):
    """Whoever sees one handshake can test guesses offline: a guessable token is
    refused before anything listens or connects."""
    out = subprocess.run([sys.executable, "-m", "memviz", "worker", "--listen",
                          "tcp:127.0.0.1:0"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "MEMVIZ_TOKEN": weak})
    assert out.returncode == 2 and "the token is too weak" in out.stderr
    assert "listening" not in out.stdout
    path = tmp_path / "token"
    path.write_text(weak + "\n")
    path.chmod(0o600)
    out = subprocess.run([sys.executable, "-m", "memviz", "run", "--connect",
                          "tcp:127.0.0.1:9", "--token-file", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "the token is too weak" in out.stderr
    assert weak not in out.stderr


def test_memviz_token_makes_a_strong_private_token(tmp_path):
    from memviz.protocol.token import RANDOM_BYTES, is_memviz_token

    printed = subprocess.run([sys.executable, "-m", "memviz", "token"], capture_output=True,
                             text=True, timeout=60).stdout.strip()
    assert is_memviz_token(printed) and RANDOM_BYTES * 8 == 256
    path = tmp_path / "token"
    done = subprocess.run([sys.executable, "-m", "memviz", "token", "--write", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and (path.stat().st_mode & 0o777) == 0o600
    written = path.read_text().strip()
    assert written != printed and is_memviz_token(written)
    again = subprocess.run([sys.executable, "-m", "memviz", "token", "--write", str(path)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "exists" in again.stderr
    assert path.read_text().strip() == written  # nothing lost


def test_listen_alone_is_a_private_unix_socket_that_leaves_nothing(tmp_path):
    token = handshake.new_token()
    proc = subprocess.Popen([sys.executable, "-m", "memviz", "worker", "--listen"],
                            env={**os.environ, "MEMVIZ_TOKEN": token}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("memviz worker listening on unix:"), proc.stderr.read()
        path = line.split("listening on unix:", 1)[1].strip()
        folder = os.path.dirname(path)
        assert (os.stat(folder).st_mode & 0o777) == 0o700  # only its owner may enter
        done = subprocess.run([sys.executable, "-m", "memviz", "run", "--connect",
                               f"unix:{path}", "--model", "conv-lm", "--steps", "1",
                               "--batch-size", "1", "--seq-len", "16"],
                              capture_output=True, text=True, timeout=WORKER_DEADLINE_S,
                              env={**os.environ, "MEMVIZ_TOKEN": token})
        assert done.returncode == 0, done.stderr
        assert proc.wait(60) == 0
        assert not os.path.exists(folder)  # neither the socket nor its folder is left
    finally:
        proc.kill()
        proc.wait()


def test_a_stale_socket_file_does_not_block_a_restart(tmp_path):
    path = tmp_path / "w.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a killed worker's file: nothing listens at it
    token = handshake.new_token()
    proc = subprocess.Popen([sys.executable, "-m", "memviz", "worker", "--listen",
                             f"unix:{path}"], env={**os.environ, "MEMVIZ_TOKEN": token},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in proc.stdout.readline(), proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(os.getuid() != 0, reason="needs another user to listen")
def test_a_controller_refuses_a_listener_of_another_user():
    """A stranger listening where the owner expects a worker gets nothing: the
    controller checks who listens at a Unix socket before it says a word."""
    import shutil
    import tempfile

    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python for another user")
    shared = tempfile.mkdtemp(prefix="memviz-shared-")
    os.chmod(shared, 0o777)  # where anyone may put a socket
    path = os.path.join(shared, "w.sock")
    rogue = subprocess.Popen(
        [python, "-c", "import socket, sys; s = socket.socket(socket.AF_UNIX); "
         "s.bind(sys.argv[1]); s.listen(1); print('ready', flush=True); "
         "c, _ = s.accept(); print(repr(c.recv(4096)), flush=True)", path],
        stdout=subprocess.PIPE, text=True, user="nobody")
    try:
        assert rogue.stdout.readline() == "ready\n"
        done = subprocess.run([sys.executable, "-m", "memviz", "run", "--connect",
                               f"unix:{path}", "--steps", "1"], capture_output=True, text=True,
                              timeout=WORKER_DEADLINE_S,
                              env={**os.environ, "MEMVIZ_TOKEN": handshake.new_token()})
        assert done.returncode != 0
        assert "belongs to another user" in done.stderr and "Traceback" not in done.stderr
        assert rogue.stdout.readline() == "b''\n"  # it was told nothing
    finally:
        rogue.kill()
        rogue.wait()
        shutil.rmtree(shared, ignore_errors=True)
