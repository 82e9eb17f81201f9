"""The start of a program that ``memviz record`` follows: its socket, its token and
its process, made before anything else memviz needs is imported, so that the
program's own start-up (Python, torch) runs beside memviz's on another core."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from ..processes import RECORD_CONNECT_ENV, RECORD_DETAIL_ENV, RECORD_HZ_ENV, RECORD_LEVEL_ENV
from ..protocol import address
from ..protocol.token import TOKEN_ENV, new_token
from .parent_death import signalled_when_parent_dies


@dataclass
class StartedProgram:
    proc: subprocess.Popen
    server: socket.socket  # where the program (or each rank of it) connects
    token: str
    folder: str  # the socket's private folder

    def abandon(self) -> None:
        """memviz cannot follow it after all (its file could not be made): the program
        is stopped and its socket removed."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.close()

    def close(self) -> None:
        self.server.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_program(command: list[str], *, track: str, sample_hz: float, detail: str,
                  extra_env: dict[str, str] | None = None,
                  stdout_to_stderr: bool = False) -> StartedProgram:
    """Listen on a fresh private socket and start ``command`` with where to connect, the
    token to prove, and how to track (``memviz.program.boot`` reads them). The program
    is stopped (SIGTERM) if this process dies before it."""
    folder = tempfile.mkdtemp(prefix="memviz-record-")
    token = new_token()
    try:
        server, addr = address.listen(address.parse(f"unix:{folder}/program.sock"))
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    env = {**os.environ, RECORD_CONNECT_ENV: str(addr), TOKEN_ENV: token,
           RECORD_LEVEL_ENV: track, RECORD_HZ_ENV: str(sample_hz), RECORD_DETAIL_ENV: detail,
           **(extra_env or {})}
    try:
        proc = subprocess.Popen(command, env=env,
                                stdout=sys.stderr if stdout_to_stderr else None,
                                preexec_fn=signalled_when_parent_dies())
    except OSError:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return StartedProgram(proc, server, token, folder)
