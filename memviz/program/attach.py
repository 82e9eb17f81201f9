"""Attaching memviz to a Python program already running: ``memviz.start()`` run inside
it (``inject.py``), to a file or streaming to a window, and ``memviz.stop()`` the same
way when the attachment ends. The program's models and optimizers are found on its
heap; what they held before is recorded as existing, each by its category.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from .inject import InjectError, check_target, run_file_in

START_TIMEOUT_S = 120.0  # the main thread may be inside one long step
POLL_S = 0.2


START_SCRIPT = """
def _memviz_attach():
    import sys
    try:
        if {root!r} not in sys.path:
            sys.path.append({root!r})
        from memviz.program.api import start
        start(**{target!r}, track={level!r}, force=True, scan_heap=True, program={label!r})
        said = "started"
    except BaseException as exc:
        said = "failed: " + type(exc).__name__ + ": " + str(exc)
    with open({status!r}, "w") as f:
        f.write(said)
_memviz_attach()
del _memviz_attach
"""
STOP_SCRIPT = """
def _memviz_detach():
    try:
        from memviz.program.api import stop
        said = "stopped" if stop() is not None else "was not tracking"
    except BaseException as exc:
        said = "failed: " + type(exc).__name__ + ": " + str(exc)
    with open({status!r}, "w") as f:
        f.write(said)
_memviz_detach()
del _memviz_detach
"""


class Attachment:
    """Tracking inside process ``pid``: to ``output`` (a .memviz path), or to a window
    listening at ``connect`` with ``token``."""

    def __init__(self, pid: int, output: Path | None = None, connect: str | None = None,
                 token: str | None = None, level: str = "tensors") -> None:
        self.pid = pid
        self.command = check_target(pid)
        self.output, self.connect, self.token, self.level = output, connect, token, level
        self.folder = Path(tempfile.mkdtemp(prefix="memviz-attach-"))  # ours alone (0700)
        self.status = self.folder / "status"

    def start(self) -> None:
        """Tracking has begun in the process when this returns; ``InjectError`` if not."""
        root = str(Path(__file__).resolve().parents[2])
        target = {"output": str(self.output)} if self.output is not None else \
            {"connect": self.connect, "token": self.token}
        said = self._run(START_SCRIPT.format(
            root=root, target=target, level=self.level, status=str(self.status),
            label=f"attached to {self.pid}: {self.command}"), "start")
        if said != "started":
            raise InjectError(f"process {self.pid} could not start tracking: "
                              + (said or f"it ran no Python within {START_TIMEOUT_S:.0f} s"))

    def stop(self) -> None:
        """Tracking has ended in the process (its file finished) when this returns."""
        said = self._run(STOP_SCRIPT.format(status=str(self.status)), "stop")
        if said.startswith("failed"):
            raise InjectError(f"detaching failed in process {self.pid}: {said}")

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        # a child that exited stays a zombie until its parent reaps it: it is gone
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{self.pid}/stat").read_text()
            return stat.rsplit(")", 1)[1].split()[0] != "Z"
        return True

    def close(self) -> None:
        for leftover in self.folder.iterdir():
            leftover.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.folder.rmdir()

    def _run(self, source: str, name: str) -> str:
        self.status.unlink(missing_ok=True)
        script = self.folder / f"{name}.py"
        script.write_text(source)
        run_file_in(self.pid, script)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self.alive():
            if self.status.exists() and self.status.read_text().strip():
                break
            time.sleep(POLL_S)
        return self.status.read_text().strip() if self.status.exists() else ""
