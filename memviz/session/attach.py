"""A worker someone else started (``memviz worker --listen`` on a GPU server), driven
from here: ``memviz run --connect ADDR`` and the window's File → Attach to a worker.

The same stream as a worker this process starts, over an authenticated
connection; what it cannot do is kill a process on another machine, so stopping
is asking (and, past the memory cap, hanging up: the worker stops when its
controller goes away).
"""

from __future__ import annotations

import contextlib
import threading

from ..core.run import Run
from ..protocol import address, handshake
from ..protocol.transport import Connection, ConnectionClosed
from .feed import Feed, finish_recording, serve
from .memory_cap import MemoryCap

CONNECT_TIMEOUT_S = 30.0


class AttachedSession:
    def __init__(self, run: Run, where: str, token: str, *, recorder=None,
                 memory_cap: MemoryCap | None = None) -> None:
        self.run = run
        self.where = where
        self.token = token
        self.recorder = recorder
        self.memory_cap = memory_cap
        self.conn: Connection | None = None
        self.exit_code: int | None = None
        self.pid = None  # on another machine, perhaps
        self.done = threading.Event()
        self._stop_requested = False

    def start(self) -> None:
        threading.Thread(target=self._drive, daemon=True, name="memviz-attach").start()

    def request_stop(self) -> None:
        self._stop_requested = True
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.send([{"type": "stop"}])

    def kill(self) -> None:
        """Hang up: a worker whose controller goes away stops at its next phase."""
        self._stop_requested = True
        if self.conn is not None:
            self.conn.close()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def _drive(self) -> None:
        try:
            self._attach_and_serve()
        finally:
            if not self.done.is_set():
                self._end("crash", f"lost the worker at {self.where}")

    def _attach_and_serve(self) -> None:
        try:
            conn = Connection(address.connect(address.parse(self.where), CONNECT_TIMEOUT_S))
        except (OSError, ValueError) as exc:
            self._end("start", f"cannot reach a worker at {self.where}: {exc}")
            return
        try:
            peer = handshake.perform(conn, self.token, "controller")
            if peer["role"] != "worker":
                raise handshake.ProtocolError(f"the peer at {self.where} is a {peer['role']}, "
                                              "not a worker")
            conn.send([{"type": "start", "spec": self.run.spec.to_dict()}])
        except ConnectionClosed:
            conn.close()
            self._end("start", f"the worker at {self.where} refused: it hung up during the "
                               "handshake (a wrong token?)")
            return
        except (OSError, ValueError) as exc:
            conn.close()
            self._end("start", f"the worker at {self.where} refused: {exc}")
            return
        self.conn = conn
        if self._stop_requested:
            self.request_stop()
        feed = Feed(self.run, recorder=self.recorder, memory_cap=self.memory_cap,
                    stop=self.request_stop, kill=self.kill)
        serve(conn, feed, "worker", conn.close)
        if self._stop_requested:
            self.run.mark_stopped()
        self._end("crash", f"the worker at {self.where} hung up before its run ended")

    def _end(self, kind: str, message: str) -> None:
        if not self.run.finished:
            self.run.fail(kind, message)
        self.exit_code = 0 if self.run.state != "failed" else 1
        if self.recorder is not None:
            finish_recording(self.recorder, self.run)
        self.done.set()
