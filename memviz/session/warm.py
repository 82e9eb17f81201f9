"""Workers started warm: a comparison's or a fit's runs forked from one parent that has
already imported torch and transformers (``worker/zygote.py``), so each run's start
costs a fork, not seconds of imports.

Each run is still its own process with its own measurements; every run of a
comparison starts from the same parent, so their RSS baselines are alike (the
report shows each run's RSS before its model loaded). ``ForkedProcess`` looks like
the ``subprocess.Popen`` a ``WorkerSession`` otherwise holds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..protocol import address, handshake
from ..protocol.accept import accept_authenticated
from ..protocol.transport import Connection, ConnectionClosed
from .spawn import popen_own_session

READY_TIMEOUT_S = 120.0


class ForkedProcess:
    """A worker the warm parent forked: waited on through the parent's reports."""

    def __init__(self, pid: int, log: Path, warm: WarmStart) -> None:
        self.pid = pid
        self.log = log
        self.warm = warm
        self.returncode: int | None = None
        self.ended = threading.Event()
        self.stdout = self._lines()

    def _ended(self, code: int) -> None:
        self.returncode = code
        self.ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self.ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout)
        return self.returncode

    def _signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def _lines(self) -> Iterator[str]:
        """The worker's output as it is written to its log, until it has ended."""
        with open(self.log, errors="replace") as source:
            pending = ""
            while True:
                chunk = source.read()
                if chunk:
                    pending += chunk
                    *lines, pending = pending.split("\n")
                    yield from (line + "\n" for line in lines)
                elif self.ended.is_set():
                    if pending:
                        yield pending
                    return
                else:
                    time.sleep(0.05)


class WarmStart:
    """One warm parent; ``spawn`` forks a worker for a controller's address and token.

    ``WarmStart(wait=False)`` only starts its process: its seconds of imports then run
    beside whatever the caller does next, and ``wait_ready`` (or the first ``spawn``)
    waits for them."""

    def __init__(self, wait: bool = True) -> None:
        from ..processes import worker_command

        self._dir = Path(tempfile.mkdtemp(prefix="memviz-warm-"))
        self._token = handshake.new_token()
        self._server, addr = address.listen(address.parse(f"unix:{self._dir}/warm.sock"))
        self.proc = popen_own_session(
            [*worker_command(), "--zygote", "--connect", str(addr)],
            env={**os.environ, "MEMVIZ_TOKEN": self._token, "PYTHONUNBUFFERED": "1",
                 "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.conn: Connection | None = None
        self._children: dict[int, ForkedProcess] = {}
        self._forked: list[int] = []
        self._lock = threading.Lock()
        self._reply = threading.Condition()
        self._count = 0
        self._early: dict[int, list[int]] = {}  # exits heard before spawn() kept the child
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Until the warm parent has imported and proven itself (at once if it has);
        OSError if it cannot start, and it is stopped."""
        with self._lock:
            if self.conn is not None:
                return
            try:
                result = accept_authenticated(self._server, self._token, "controller",
                                              give_up=lambda: self.proc.poll() is not None,
                                              timeout=READY_TIMEOUT_S)
            finally:
                self._server.close()
            if result is None:
                self.close()
                raise OSError("the warm parent did not start")
            self.conn = result[0]
            threading.Thread(target=self._listen, daemon=True, name="memviz-warm").start()

    def spawn(self, connect: str, token: str) -> ForkedProcess:
        """A new worker that connects to ``connect`` proving ``token``."""
        self.wait_ready()
        with self._lock:
            self._count += 1
            log = self._dir / f"worker-{self._count}.log"
            log.touch(mode=0o600)
            with self._reply:
                before = len(self._forked)
                self.conn.send([{"type": "fork", "connect": connect, "token": token,
                                 "log": str(log)}])
                if not self._reply.wait_for(lambda: len(self._forked) > before,
                                            timeout=READY_TIMEOUT_S):
                    raise OSError("the warm parent did not fork a worker")
                pid = self._forked[before]
                child = ForkedProcess(pid, log, self)
                self._children[pid] = child
                for early in self._early.pop(pid, []):
                    child._ended(early)
                return child

    def _listen(self) -> None:
        try:
            while True:
                for message in self.conn.receive():
                    if message["type"] == "forked":
                        with self._reply:
                            self._forked.append(message["pid"])
                            self._reply.notify_all()
                    elif message["type"] == "exited":
                        child = self._children.get(message["pid"])
                        if child is None:  # ended before spawn() recorded it
                            self._early.setdefault(message["pid"], []).append(message["code"])
                        else:
                            child._ended(message["code"])
        except (ConnectionClosed, OSError, ValueError):
            for child in self._children.values():
                if not child.ended.is_set():
                    child._ended(-signal.SIGKILL)

    def close(self) -> None:
        if self.conn is None:  # never ready (or not yet): nothing to tell, only to stop
            self._server.close()
            self.proc.kill()
            self.proc.wait()
        else:
            with contextlib.suppress(OSError):
                self.conn.send([{"type": "stop"}])
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.conn.close()
        shutil.rmtree(self._dir, ignore_errors=True)
