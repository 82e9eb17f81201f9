"""A child that must not outlive the memviz process that started it.

``memviz record`` follows the program it starts: if ``record`` is killed (SIGKILL,
a closed terminal's session), the program would go on tracking into a socket
nobody reads. On Linux the kernel sends the child a signal when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), set between fork and exec; a parent that died
before that is caught by its pid changing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def signalled_when_parent_dies(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies;
    None where the system has no such thing. SIGTERM lets a program that handles it
    end as it chooses, as it would when its terminal went away."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above
            os.kill(os.getpid(), sig)

    return in_child
