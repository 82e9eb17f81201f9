"""The window waiting for programs: ``memviz record --connect`` or ``memviz.track(connect=)``.

It listens on loopback with a fresh token and shows the command to paste. Every
program that proves the token streams into a Run of its own (created when its
``run_started`` says what it is); strangers are refused and logged, and the
listener waits on.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable

from ..core.run import Run
from ..core.spec import RunSpec, SpecError
from ..protocol import address, handshake
from ..protocol.accept import MAX_PENDING, POLL_S, authenticate
from ..protocol.token import TOKEN_ENV
from ..protocol.transport import Connection, ConnectionClosed
from .feed import Feed, finish_recording, serve


class ProgramConnection:
    """One program's stream, seen as a session: stopping asks it to stop tracking."""

    def __init__(self, run: Run, conn: Connection) -> None:
        self.run = run
        self.conn = conn
        self.exit_code: int | None = None
        self.pid = None
        self.done = threading.Event()

    def request_stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send([{"type": "stop"}])

    def kill(self) -> None:
        self.conn.close()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


class ProgramListener:
    def __init__(self, where: str = "tcp:127.0.0.1:0",
                 next_run_id: Callable[[], int] = lambda: 0,
                 recorder_for: Callable[[Run], object] | None = None) -> None:
        self.token = handshake.new_token()
        self.next_run_id = next_run_id
        self.recorder_for = recorder_for
        self._server, self.address = address.listen(address.parse(where))
        self._closed = threading.Event()
        self._arrived: queue.Queue = queue.Queue()
        self._pending = threading.BoundedSemaphore(MAX_PENDING)
        self.refusals: list[str] = []
        threading.Thread(target=self._accept, daemon=True, name="memviz-listener").start()

    def command(self, program: str = "python train.py") -> str:
        """What to paste in a terminal to profile a program here."""
        return f"{TOKEN_ENV}={self.token} memviz record --connect {self.address} -- {program}"

    def take_arrivals(self) -> list[ProgramConnection]:
        """The programs that connected since the last call."""
        arrivals = []
        while True:
            try:
                arrivals.append(self._arrived.get_nowait())
            except queue.Empty:
                return arrivals

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.close()

    def _accept(self) -> None:
        self._server.settimeout(POLL_S)
        while not self._closed.is_set():
            try:
                sock, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            if not self._pending.acquire(blocking=False):
                sock.close()
                continue
            threading.Thread(target=self._serve, args=(sock,), daemon=True,
                             name="memviz-listener-program").start()

    def _serve(self, sock) -> None:
        try:
            result = authenticate(sock, self.token, "controller", self.refusals.append)
        finally:
            self._pending.release()
        if result is None:
            return
        conn, peer = result
        if peer["role"] != "program":
            self.refusals.append(f"refused a {peer['role']}: this window waits for programs")
            conn.close()
            return
        pending: list[dict] = []
        try:
            while not any(m["type"] == "run_started" for m in pending):
                pending.extend(conn.receive())
            started = next(m for m in pending if m["type"] == "run_started")
            run = Run(RunSpec.from_dict(started["spec"]), run_id=self.next_run_id())
        except (ConnectionClosed, OSError, ValueError, SpecError) as exc:
            self.refusals.append(f"a program's stream broke before it began: {exc}")
            conn.close()
            return
        session = ProgramConnection(run, conn)
        recorder = self.recorder_for(run) if self.recorder_for else None
        feed = Feed(run, recorder=recorder, stop=session.request_stop, kill=session.kill)
        feed.consume(pending)
        self._arrived.put(session)
        serve(conn, feed, "program", conn.close)
        if not run.finished:
            run.fail("crash", "the program stopped streaming before its end")
        if recorder is not None:
            finish_recording(recorder, run)
        session.done.set()
