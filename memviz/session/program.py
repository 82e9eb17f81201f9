"""A user's program run under ``memviz.track`` (``memviz record``), watched from here.

The program is started here with where to stream and a fresh token in its
environment (``memviz.program.boot`` reads them); its output passes through
unchanged. Its stream is recorded here, so a crash or a kill of the program
loses nothing it sent. With ``relay``, every frame also goes on to a window.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading

from ..core.run import Run
from ..processes import RECORD_CONNECT_ENV, RECORD_HZ_ENV, RECORD_LEVEL_ENV
from ..protocol import address, handshake
from ..protocol.accept import accept_authenticated
from ..protocol.token import TOKEN_ENV
from ..protocol.transport import Connection
from .feed import Feed, finish_recording, serve
from .memory_cap import MemoryCap
from .session import describe_exit

CONNECT_TIMEOUT_S = 120.0  # a program may import a great deal before tracking starts


class ProgramSession:
    def __init__(self, command: list[str], run: Run, *, recorder=None,
                 relay: Connection | None = None, memory_cap: MemoryCap | None = None,
                 extra_env: dict[str, str] | None = None, stdout_to_stderr: bool = False) -> None:
        self.command = command
        # the program's own output goes to standard error where standard output
        # carries memviz's (record -o - / --summary -)
        self.stdout_to_stderr = stdout_to_stderr
        self.run = run
        self.recorder = recorder
        self.relay = relay
        self.memory_cap = memory_cap
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.exit_code: int | None = None
        self.done = threading.Event()
        self._tmpdir = tempfile.mkdtemp(prefix="memviz-record-")
        self._token = handshake.new_token()
        self._serving = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        server, addr = address.listen(address.parse(f"unix:{self._tmpdir}/program.sock"))
        env = {**os.environ, RECORD_CONNECT_ENV: str(addr), TOKEN_ENV: self._token,
               RECORD_LEVEL_ENV: self.run.spec.track,
               RECORD_HZ_ENV: str(self.run.spec.sample_hz),
               **self.extra_env}
        try:
            self.proc = subprocess.Popen(self.command, env=env,
                                         stdout=sys.stderr if self.stdout_to_stderr else None)
        except OSError:
            server.close()
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            raise
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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def _serve(self, server) -> None:
        try:
            result = accept_authenticated(
                server, self._token, "controller",
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
        self.conn = conn
        feed = Feed(self.run, recorder=self.recorder, memory_cap=self.memory_cap,
                    relay=self.relay, stop=self.request_stop, kill=self.kill)
        self._serving.set()
        serve(conn, feed, "program", self.kill)

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
        if self.recorder is not None:
            finish_recording(self.recorder, self.run)
        if self.relay is not None:
            self.relay.close()
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        self.done.set()
