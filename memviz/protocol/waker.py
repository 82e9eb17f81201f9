"""Wake a thread blocked on a listening socket at once, instead of at its next poll."""

from __future__ import annotations

import contextlib
import selectors
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

    def close(self) -> None:
        self._readable.close()
        self._writable.close()
