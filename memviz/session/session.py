"""One worker process for one run: spawn, handshake, stream into a Run, stop.

Threads: one accepts the worker and reads its frames into the Run, one pumps
the worker's stdout/stderr into the Run's log, one waits for the process to
exit and turns an unexpected exit into a readable failure. While the run goes,
the address stays open for the ranks 1..N-1 of a sharded run: each connects
with the same token (hello role ``rank``) and streams into a Run of its own,
``run.ranks[rank]``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading

from ..core.run import Run
from ..processes import worker_command
from ..protocol import address, handshake
from ..protocol.accept import accept_authenticated
from ..protocol.framing import FrameError
from ..protocol.messages import ProtocolError
from ..protocol.transport import Connection, ConnectionClosed
from ..protocol.waker import Waker
from .feed import Feed, finish_recording, serve
from .memory_cap import AUTO, MemoryCap, parse_cap
from .spawn import popen_own_session

CONNECT_TIMEOUT_S = 60.0
# A worker stops at its next phase boundary: a fraction of a second on a quiet
# machine, seconds on a loaded one. Past this it is terminated, then killed.
STOP_GRACE_S = 10.0
TERMINATE_GRACE_S = 2.0
RANKS_POLL_S = 0.2  # a safety net: the end of rank 0's stream wakes the listening at once


def describe_exit(code: int, what: str = "worker") -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed: out of memory, or stopped from outside)" if -code == 9 else ""
        return f"the {what} was killed by {name}{hint}"
    return f"the {what} exited with code {code}"


class WorkerSession:
    def __init__(self, run: Run, extra_env: dict[str, str] | None = None,
                 recorder=None, memory_cap: MemoryCap | None = None, warm=None) -> None:
        """``recorder`` (a memviz.snapshot.Recorder) gets every frame the Run gets.
        ``memory_cap`` (default: a share of the memory available now): a worker whose
        memory passes it is stopped and its run fails with kind ``oom`` (the machine
        keeps its memory)."""
        self.run = run
        self.memory_cap = memory_cap if memory_cap is not None else parse_cap(AUTO)
        self.warm = warm  # a session.warm.WarmStart to fork the worker from, or None
        self.extra_env = extra_env or {}
        self.recorder = recorder
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self._tmpdir = tempfile.mkdtemp(prefix="memviz-")
        self._token = handshake.new_token()
        self._threads: list[threading.Thread] = []
        self._stop_requested = False
        self._last_output = ""
        self.exit_code: int | None = None
        self.done = threading.Event()

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        self.run.spec.validate()
        server, addr = address.listen(address.parse(f"unix:{self._tmpdir}/worker.sock"))
        env = dict(os.environ)
        env.update({
            "MEMVIZ_TOKEN": self._token,
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        })
        env.pop("QT_QPA_PLATFORM", None)
        env.update(self.extra_env)
        if self.warm is not None and not self.extra_env:
            self.proc = self.warm.spawn(str(addr), self._token)
        else:
            self.proc = self._spawn(addr, env)
        for target, args in ((self._serve, (server,)), (self._pump_output, ()),
                             (self._watch_exit, ())):
            thread = threading.Thread(target=target, args=args, daemon=True,
                                      name=f"memviz-session-{target.__name__}")
            thread.start()
            self._threads.append(thread)

    def _spawn(self, addr, env: dict[str, str]) -> subprocess.Popen:
        # its own session: a terminal's Ctrl-C reaches the controller only, which
        # stops the worker cleanly (a worker still importing would die of it)
        return popen_own_session(
            [*worker_command(), "--connect", str(addr)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1,
        )

    def request_stop(self) -> None:
        """Ask the worker to stop at the next phase boundary; kill it if it lingers."""
        if self._stop_requested or self.proc is None:
            return
        self._stop_requested = True
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.send([{"type": "stop"}])
        threading.Thread(target=self._reap, daemon=True, name="memviz-session-reap").start()

    def _reap(self) -> None:
        assert self.proc is not None
        try:
            self.proc.wait(STOP_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def request_detail(self) -> None:
        """Record the next step with the per-op tracker (every temporary, every op)."""
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.send([{"type": "detail"}])

    def kill(self) -> None:
        """End the worker at once (a second Ctrl-C); what it streamed is kept."""
        self._stop_requested = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        self.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    # -- threads --------------------------------------------------------------
    def _accept(self, server) -> Connection | None:
        """The worker's connection, once it has proven the run's token."""
        result = accept_authenticated(
            server, self._token, "controller",
            refused=lambda text: self.run.add_log("error", text),
            give_up=lambda: self.proc is not None and self.proc.poll() is not None,
            timeout=CONNECT_TIMEOUT_S)
        if result is not None:
            conn, peer = result
            if peer["role"] == "worker":
                return conn
            conn.close()
            self.run.fail("start", f"the first connection was a {peer['role']}, not the worker")
        elif self.proc is not None and self.proc.poll() is None:
            self.run.fail("start", f"the worker did not connect within {CONNECT_TIMEOUT_S:.0f} s")
        if self.proc is not None:
            self.proc.kill()
        return None

    def _serve(self, server) -> None:
        try:
            conn = self._accept(server)
        except BaseException:
            server.close()
            raise
        if conn is None:
            server.close()
            return
        self.conn = conn
        primary_done = threading.Event()
        waker = Waker()  # the end of rank 0's stream ends the listening at once
        ranks = threading.Thread(target=self._accept_ranks, args=(server, primary_done, waker),
                                 daemon=True, name="memviz-session-ranks")
        ranks.start()
        self._threads.append(ranks)
        try:
            self._serve_primary(conn)
        finally:
            primary_done.set()
            waker.wake()

    def _serve_primary(self, conn: Connection) -> None:
        feed = Feed(self.run, recorder=self.recorder, memory_cap=self.memory_cap,
                    stop=self.request_stop, kill=self.kill)
        try:
            conn.send([{"type": "start", "spec": self.run.spec.to_dict()}])
            if self._stop_requested:
                conn.send([{"type": "stop"}])
        except OSError as exc:
            self.run.add_log("error", f"connection to the worker lost: {exc}")
            conn.close()
            return
        serve(conn, feed, "worker", self.kill)

    def _accept_ranks(self, server, primary_done: threading.Event, waker: Waker) -> None:
        """Take the other ranks' connections for as long as rank 0 streams."""
        server.settimeout(RANKS_POLL_S)
        try:
            while not primary_done.is_set():
                if not waker.wait_readable(server, RANKS_POLL_S):
                    continue
                try:
                    sock, _ = server.accept()
                except TimeoutError:
                    continue
                sock.settimeout(None)
                thread = threading.Thread(target=self._serve_rank, args=(Connection(sock),),
                                          daemon=True, name="memviz-session-rank")
                thread.start()
                self._threads.append(thread)
        except OSError:
            pass
        finally:
            server.close()
            waker.close()

    def _serve_rank(self, conn: Connection) -> None:
        """One rank's stream: buffered until its run_started says which rank it is."""
        rank_run: Run | None = None
        pending: list[dict] = []
        try:
            peer = handshake.perform(conn, self._token, "controller")
            if peer["role"] != "rank":
                raise ProtocolError(f"a second connection must be a rank, not {peer['role']!r}")
            while True:
                messages = conn.receive()
                if rank_run is None:
                    pending.extend(messages)
                    started = next((m for m in pending if m["type"] == "run_started"), None)
                    if started is None:
                        continue
                    rank_run = self.run.add_rank(int(started.get("rank", 0)), started["spec"])
                    messages, pending = pending, []
                rank_run.apply_all(messages)
        except ConnectionClosed:
            pass
        except (FrameError, ProtocolError, ValueError, OSError) as exc:
            self.run.add_log("error", f"a rank's stream was refused or broke: {exc}")
        finally:
            conn.close()
            if rank_run is not None and not rank_run.finished:
                rank_run.fail("crash", f"rank {rank_run.rank} stopped streaming before its end")

    def _pump_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip()
            if line:
                self._last_output = line.strip()
                self.run.add_log("worker", line)

    def _watch_exit(self) -> None:
        assert self.proc is not None
        code = self.proc.wait()
        joined: set[threading.Thread] = {threading.current_thread()}
        while waiting := [t for t in self._threads if t not in joined]:  # ranks come late
            waiting[0].join(timeout=5)
            joined.add(waiting[0])
        if not self.run.finished:
            if self._stop_requested:
                self.run.mark_stopped()
            else:
                last = f": {self._last_output}" if code > 0 and self._last_output else ""
                self.run.fail("crash", describe_exit(code) + last)
        self.exit_code = code
        if self.recorder is not None:
            finish_recording(self.recorder, self.run)
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        self.done.set()
