"""A user's program run under ``memviz.track`` (``memviz record``), watched from here.

The program is started (``program_start``) with where to stream and a fresh token
in its environment (``memviz.program.boot`` reads them); its output passes through
unchanged. Its stream is recorded here, so a crash or a kill of the program
loses nothing it sent. With ``relay``, every frame also goes on to a window.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Callable

from ..core.rank_files import rank_path
from ..core.run import Run
from ..protocol.accept import accept_authenticated, accept_each
from ..protocol.framing import FrameError
from ..protocol.messages import ProtocolError
from ..protocol.transport import Connection, ConnectionClosed
from .feed import Feed, finish_recording, serve, until_started
from .memory_cap import MemoryCap
from .program_start import StartedProgram
from .session import describe_exit

CONNECT_TIMEOUT_S = 120.0  # a program may import a great deal before tracking starts


class ProgramSession:
    def __init__(self, started: StartedProgram, run: Run, *, recorder=None,
                 relay: Connection | None = None, memory_cap: MemoryCap | None = None,
                 ranks: bool = False,
                 relay_for_rank: Callable[[], Connection] | None = None) -> None:
        self.started = started
        # a launcher's job: every rank connects, rank 0 streams into ``run``, rank r into
        # ``run.ranks[r]`` and a file of its own beside the recorder's
        self.follows_ranks = ranks
        self.relay_for_rank = relay_for_rank
        self._rank_recorders: list[tuple[object, Run]] = []
        self._rank_relays: list[Connection] = []
        self.run = run
        self.recorder = recorder
        self.relay = relay
        self.memory_cap = memory_cap
        self.conn: Connection | None = None
        self.exit_code: int | None = None
        self.done = threading.Event()
        self._serving = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Serve the program's stream and watch it to its exit."""
        server = self.started.server
        for target, args in ((self._serve, (server,)), (self._watch_exit, ())):
            thread = threading.Thread(target=target, args=args, daemon=True,
                                      name=f"memviz-program-{target.__name__}")
            thread.start()
            self._threads.append(thread)

    def request_stop(self) -> None:
        """Stop tracking (the program itself goes on to its end)."""
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.send([{"type": "stop"}])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    @property
    def proc(self) -> subprocess.Popen:
        """The program's process (a launcher's, for a job)."""
        return self.started.proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _serve(self, server) -> None:
        if self.follows_ranks:
            self._serve_ranks(server)
            return
        try:
            result = accept_authenticated(
                server, self.started.token, "controller",
                refused=lambda text: self.run.add_log("error", text),
                give_up=lambda: self.proc.poll() is not None, timeout=CONNECT_TIMEOUT_S)
        finally:
            server.close()
        if result is None:
            return
        conn, peer = result
        if peer["role"] != "program":
            conn.close()
            return
        self._serve_program(conn, self.run, self.recorder, self.relay)

    def _serve_ranks(self, server) -> None:
        """A launched job: every rank that proves the token, for as long as the job runs."""
        def on_peer(conn: Connection, peer: dict) -> None:
            if peer["role"] != "program":
                conn.close()
                return
            thread = threading.Thread(target=self._serve_rank, args=(conn,), daemon=True,
                                      name="memviz-program-rank")
            self._threads.append(thread)
            thread.start()

        try:
            accept_each(server, self.started.token, "controller", on_peer,
                        refused=lambda text: self.run.add_log("error", text),
                        give_up=lambda: self.proc.poll() is not None)
        finally:
            server.close()

    def _serve_program(self, conn: Connection, run: Run, recorder, relay,
                       pending: list[dict] | None = None) -> None:
        if run is self.run:
            self.conn = conn
            self._serving.set()
        feed = Feed(run, recorder=recorder, memory_cap=self.memory_cap,
                    relay=relay, stop=self.request_stop, kill=self.kill)
        if pending:
            feed.consume(pending)
        serve(conn, feed, "program", self.kill)

    def _serve_rank(self, conn: Connection) -> None:
        """One rank of a launched job: buffered until its run_started says which rank."""
        try:
            started, pending = until_started(conn)
            rank = int(started.get("rank", 0))
            if rank == 0:
                run, recorder, relay = self.run, self.recorder, self.relay
            else:
                run = self.run.add_rank(rank, started["spec"])
                recorder = self._rank_recorder(rank, run)
                relay = self.relay_for_rank() if self.relay_for_rank else None
                if relay is not None:
                    self._rank_relays.append(relay)
        except (ConnectionClosed, FrameError, ProtocolError, ValueError, OSError) as exc:
            self.run.add_log("error", f"a rank's stream was refused or broke: {exc}")
            conn.close()
            return
        self._serve_program(conn, run, recorder, relay, pending)

    def _rank_recorder(self, rank: int, run: Run):
        if self.recorder is None:
            return None
        from ..snapshot import Recorder

        path = rank_path(self.recorder.path, rank)
        try:
            recorder = Recorder(path, run.spec.to_dict(), overwrite=True)
        except OSError as exc:
            run.add_log("error", f"rank {rank} is not recorded: {exc}")
            return None
        self._rank_recorders.append((recorder, run))
        return recorder

    def _watch_exit(self) -> None:
        code = self.proc.wait()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=10)
        if not self.run.finished:
            if not self._serving.is_set():
                self.run.fail("start", f"the program ended before memviz could track it "
                                       f"({describe_exit(code, 'program')}): "
                                       "is memviz installed for its Python?")
            elif code < 0:
                self.run.fail("crash", describe_exit(code, "program"))
            else:
                self.run.mark_stopped()
        self.exit_code = code
        for rank_recorder, rank_run in self._rank_recorders:
            if not rank_run.finished:
                rank_run.fail("crash", f"rank {rank_run.rank} ended before tracking did "
                                       f"({describe_exit(code, 'job')})")
            finish_recording(rank_recorder, rank_run)
        if self.recorder is not None:
            finish_recording(self.recorder, self.run)
        for relay in [self.relay, *self._rank_relays]:
            if relay is not None:
                relay.close()
        self.started.close()
        self.done.set()
