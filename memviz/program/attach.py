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


# What runs inside the process: one call of memviz's, its outcome written to ``status``
# (the names it defines are deleted again: the program's ``__main__`` keeps none)
_SCRIPT = """
def _memviz_call():
    import sys
    try:
        if {root!r} not in sys.path:
            sys.path.append({root!r})
        {call}
    except BaseException as exc:
        said = "failed: " + type(exc).__name__ + ": " + str(exc)
    with open({status!r}, "w") as f:
        f.write(said)
_memviz_call()
del _memviz_call
"""
_START = ("from memviz.program.api import start; "
          "start(**{target!r}, track={level!r}, force=True, scan_heap=True, "
          "program={label!r}); said = 'started'")
_STOP = ("from memviz.program.api import stop; "
         "said = 'stopped' if stop() is not None else 'was not tracking'")


class Attachment:
    """Tracking inside process ``pid``: to ``output`` (a .memviz path), or to a window
    listening at ``connect`` with ``token``."""

    def __init__(self, pid: int, output: Path | None = None, connect: str | None = None,
                 token: str | None = None, level: str = "tensors+stacks") -> None:
        self.pid = pid
        self.command = check_target(pid)
        self.output, self.connect, self.token, self.level = output, connect, token, level
        self.folder = Path(tempfile.mkdtemp(prefix="memviz-attach-"))  # ours alone (0700)
        self.status = self.folder / "status"

    def start(self) -> None:
        """Tracking has begun in the process when this returns; ``InjectError`` if not."""
        target = {"output": str(self.output)} if self.output is not None else \
            {"connect": self.connect, "token": self.token}
        said = self._run(_START.format(target=target, level=self.level,
                                       label=f"attached to {self.pid}: {self.command}"),
                         "start")
        if said != "started":
            raise InjectError(f"process {self.pid} could not start tracking: "
                              + (said or f"it ran no Python within {START_TIMEOUT_S:.0f} s"))

    def stop(self) -> None:
        """Tracking has ended in the process (its file finished) when this returns."""
        said = self._run(_STOP, "stop")
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

    def _run(self, call: str, name: str) -> str:
        """Run ``call`` in the process; what it said of itself ("" if nothing in time)."""
        self.status.unlink(missing_ok=True)
        script = self.folder / f"{name}.py"
        script.write_text(_SCRIPT.format(root=str(Path(__file__).resolve().parents[2]),
                                         call=call, status=str(self.status)))
        run_file_in(self.pid, script)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self.alive():
            if self.status.exists() and self.status.read_text().strip():
                break
            time.sleep(POLL_S)
        return self.status.read_text().strip() if self.status.exists() else ""
