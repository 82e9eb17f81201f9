"""Wake a thread blocked on a listening socket at once, instead of at its next poll."""

from __future__ import annotations

import contextlib
import select
import socket


class Waker:
    """A socket pair: ``wake()`` makes ``wait_readable`` return before its timeout."""

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
        ready, _, _ = select.select([sock, self._readable], [], [], timeout)
        return sock in ready

    def close(self) -> None:
        self._readable.close()
        self._writable.close()
