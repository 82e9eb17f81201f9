"""A Ctrl-C that lands inside memviz's own code is handed back to the program.

Python runs a signal's handler in the main thread at the next instruction, whatever
code that is. Inside a tracked program that is often memviz's: a storage's free
callback (a weak reference firing), a module hook. An exception raised in a weak
reference's callback is printed as "Exception ignored" and dropped, so the
program's ``KeyboardInterrupt`` would be lost and the loop would run on. While
tracking, the SIGINT handler is wrapped: if the signal lands in a frame of memviz's
own package (or in code memviz's code called), it is sent again from another
thread, so that it is handled once the main thread has left memviz's code (a free
callback takes microseconds); anywhere else the program's own handler runs, as it
would without memviz. ``memviz record``'s boot frame, below the whole program, is
the program's own.
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
from types import FrameType
from typing import Any

_MEMVIZ = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_BOOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "boot.py")


def _in_memviz(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs memviz's code or code that memviz's code called."""
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(_MEMVIZ) and name != _BOOT:
            return True
        frame = frame.f_back
    return False


def _send_again(signum: int) -> None:
    os.kill(os.getpid(), signum)


class InterruptGuard:
    """Installed on the main thread while a program is tracked; ``remove`` puts the
    program's handler back (unless the program replaced the guard meanwhile)."""

    def __init__(self) -> None:
        self._theirs: Any = None
        self._installed = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # handlers can only be set from the main thread
        theirs = signal.getsignal(signal.SIGINT)
        if not callable(theirs):  # SIG_IGN / SIG_DFL: no Python code runs for it
            return
        self._theirs = theirs
        signal.signal(signal.SIGINT, self._handle)
        self._installed = True

    def _handle(self, signum: int, frame: FrameType | None) -> Any:
        if _in_memviz(frame):
            # a bare thread: threading.Thread.start waits, and the signal sent again
            # would land in that wait, inside this handler
            _thread.start_new_thread(_send_again, (signum,))
            return None
        return self._theirs(signum, frame)

    def remove(self) -> None:
        if not self._installed or threading.current_thread() is not threading.main_thread():
            return
        self._installed = False
        if signal.getsignal(signal.SIGINT) == self._handle:
            signal.signal(signal.SIGINT, self._theirs)
