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

from ..core.rank_files import rank_path
from ..core.run import Run
from ..core.spec import RunSpec, SpecError
from ..protocol import address, handshake
from ..protocol.accept import accept_each
from ..protocol.token import TOKEN_ENV
from ..protocol.transport import Connection, ConnectionClosed
from .feed import Feed, finish_recording, serve, until_started


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


class LaunchedJobs:
    """Rank 0's run of each launched job that connected, for its other ranks to join."""

    WAIT_S = 30.0  # ranks connect together; rank 0 may be a moment behind the others

    def __init__(self) -> None:
        self._rank_zero: dict[str, tuple[Run, object]] = {}
        self._arrived = threading.Condition()

    @staticmethod
    def job_of(started: dict) -> tuple[str, int] | None:
        launched = (started.get("environment") or {}).get("distributed")
        if not isinstance(launched, dict) or not isinstance(launched.get("rank"), int):
            return None
        return str(launched.get("job", "")), launched["rank"]

    def started(self, started: dict, run: Run, recorder) -> None:
        found = self.job_of(started)
        if found is not None and found[1] == 0:
            with self._arrived:
                self._rank_zero[found[0]] = (run, recorder)
                self._arrived.notify_all()

    def rank_zero_of(self, started: dict) -> tuple[int, Run, object] | None:
        """(this stream's rank, its rank 0's run and recorder) for rank r > 0 of a job
        whose rank 0 arrived (or arrives within WAIT_S)."""
        found = self.job_of(started)
        if found is None or found[1] == 0:
            return None
        with self._arrived:
            self._arrived.wait_for(lambda: found[0] in self._rank_zero, timeout=self.WAIT_S)
            zero = self._rank_zero.get(found[0])
        return None if zero is None else (found[1], *zero)


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
        self.refusals: list[str] = []
        self._jobs = LaunchedJobs()
        threading.Thread(target=self._accept, daemon=True, name="memviz-listener").start()

    def command(self, program: str = "python train.py") -> str:
        """What to paste in a terminal to profile a program here."""
        return f"{TOKEN_ENV}={self.token} memviz record --connect {self.address} -- {program}"

    def _rank_of_a_job(self, started: dict) -> tuple[Run | None, object]:
        """Rank r > 0 of a launched job: a rank of its rank 0's run (and a file beside
        its file), once rank 0 has arrived; (None, None) for anything else."""
        found = self._jobs.rank_zero_of(started)
        if found is None:
            return None, None
        rank, rank_zero, zero_recorder = found
        run = rank_zero.add_rank(rank, started["spec"])
        recorder = None
        if zero_recorder is not None:
            from ..snapshot import Recorder

            recorder = Recorder(rank_path(zero_recorder.path, rank), started["spec"],
                                overwrite=True)
        return run, recorder

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
        with contextlib.suppress(OSError):  # closed
            accept_each(self._server, self.token, "controller", self._serve,
                        refused=self.refusals.append, give_up=self._closed.is_set)

    def _serve(self, conn: Connection, peer: dict) -> None:
        if peer["role"] != "program":
            self.refusals.append(f"refused a {peer['role']}: this window waits for programs")
            conn.close()
            return
        try:
            started, pending = until_started(conn)
            spec = RunSpec.from_dict(started["spec"])
            run, recorder = self._rank_of_a_job(started)
            if run is None:
                run = Run(spec, run_id=self.next_run_id())
                recorder = self.recorder_for(run) if self.recorder_for else None
                self._jobs.started(started, run, recorder)
        except (ConnectionClosed, OSError, ValueError, SpecError) as exc:
            self.refusals.append(f"a program's stream broke before it began: {exc}")
            conn.close()
            return
        session = ProgramConnection(run, conn)
        feed = Feed(run, recorder=recorder, stop=session.request_stop, kill=session.kill)
        feed.consume(pending)
        if run.rank == 0:  # another rank joins its rank 0's run, not the list
            self._arrived.put(session)
        serve(conn, feed, "program", conn.close)
        if not run.finished:
            run.fail("crash", "the program stopped streaming before its end")
        if recorder is not None:
            finish_recording(recorder, run)
        session.done.set()
