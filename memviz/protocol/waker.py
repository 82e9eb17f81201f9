"""Wake a thread blocked on a socket at once, instead of at its next poll: by a call
(``wake``) or by a signal (``wake_on_signals``, the warm parent's SIGCHLD)."""

from __future__ import annotations

import contextlib
import selectors
import signal
import socket


class Waker:
    """A socket pair: ``wake()`` makes ``wait_readable`` return before its timeout, and
    every wait after it return at once (a waker ends a waiting loop for good)."""

    def __init__(self) -> None:
        self._readable, self._writable = socket.socketpair()
        for end in (self._readable, self._writable):
            end.setblocking(False)

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # already woken (buffer full) or closed
            self._writable.send(b"!")

    def wait_readable(self, sock: socket.socket, timeout: float) -> bool:
        """Whether ``sock`` can be read (accepted) now: waits at most ``timeout``, and
        returns False early when woken."""
        if sock.fileno() < 0:
            raise OSError("the socket was closed")
        # a selector, not select(): a process with over 1,024 descriptors open is fine
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            selector.register(self._readable, selectors.EVENT_READ)
            return any(key.fileobj is sock for key, _ in selector.select(timeout))

    def fileno(self) -> int:
        """The end that turns readable when woken (to register with a selector)."""
        return self._readable.fileno()

    def drain(self) -> None:
        """Forget the wakes so far (for a loop that waits again after each)."""
        with contextlib.suppress(BlockingIOError):
            while self._readable.recv(4096):
                pass

    def wake_on_signals(self, *signums: int) -> None:
        """Each of these signals wakes it (Python's handler would only run at the next
        bytecode, after the wait). The main thread only."""
        for signum in signums:
            signal.signal(signum, lambda _signum, _frame: None)
        signal.set_wakeup_fd(self._writable.fileno(), warn_on_full_buffer=False)

    def forget_signals(self, *signums: int) -> None:
        """The default disposition again (a forked child's own children are its own)."""
        signal.set_wakeup_fd(-1)
        for signum in signums:
            signal.signal(signum, signal.SIG_DFL)

    def close(self) -> None:
        self._readable.close()
        self._writable.close()
