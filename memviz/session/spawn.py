"""Start a process in its own session so that a terminal's Ctrl-C cannot reach it.

``start_new_session=True`` alone leaves a window: the child calls ``setsid()`` only
after it has restored its signal mask and reset its handlers to the defaults, so a
Ctrl-C sent to the controller's process group at that instant is delivered to the
child too, with the default action, and kills it before it runs a line. Blocking
SIGINT in the spawning thread closes the window: the child inherits the blocked
mask through ``exec``, a Ctrl-C meant for the group stays pending in it, and the
worker discards it when it sets SIGINT to ignored and unblocks it.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Iterator


@contextlib.contextmanager
def _interrupts_blocked() -> Iterator[None]:
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def popen_own_session(args: list[str], **kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` in a new session, safe against a Ctrl-C during the spawn."""
    with _interrupts_blocked():
        return subprocess.Popen(args, start_new_session=True, **kwargs)

