"""Accept the first peer that proves itself; strangers cost little and change nothing.

Each incoming connection gets its own short handshake (capped frames, a deadline
of ``ACCEPT_DEADLINE_S``). A peer that fails, stalls or hangs up is logged and
dropped, and the listener goes on waiting, so a port scanner or a guessing peer
can neither take the place of the real one nor lock it out. At most
``MAX_PENDING`` handshakes run at once. When they are all taken, a newcomer takes
the place of the oldest, whatever it said: the owner proves itself in
milliseconds, so only ``MAX_PENDING`` newer connections arriving within those
milliseconds could push it out, while strangers that connect and stall (silent,
or after a valid ``hello``), however many and however fast they reconnect, only
push out one another. Refusals are logged at most ``LOG_PER_S`` a second; the rest
are counted and said in one line.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable

from .framing import FrameError
from .handshake import perform
from .messages import ProtocolError
from .transport import Connection, ConnectionClosed
from .waker import Waker

MAX_PENDING = 128
ACCEPT_DEADLINE_S = 3.0  # an unproven peer's whole handshake, on a listening socket
POLL_S = 0.2
LOG_PER_S = 5


def describe_peer(sock: socket.socket) -> str:
    try:
        peer = sock.getpeername()
    except OSError:
        return "a peer"
    if isinstance(peer, tuple):
        return f"{peer[0]}:{peer[1]}"
    return "a local peer"


def authenticate(sock: socket.socket, token: str, role: str,
                 refused: Callable[[str], None]) -> tuple[Connection, dict] | None:
    """One connection's handshake: the connection and the peer, or None (refused)."""
    conn = Connection(sock)
    who = describe_peer(sock)
    try:
        return conn, perform(conn, token, role, ACCEPT_DEADLINE_S)
    except (ProtocolError, FrameError, ConnectionClosed, OSError) as exc:
        refused(f"refused {who}: {exc}")
    conn.close()
    return None


class _Pending:
    """One handshake under way (the list of them is kept oldest first)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def evict(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # its handshake fails and ends


class _RateLimited:
    """At most ``per_s`` lines a second pass; the rest are counted and summed up."""

    def __init__(self, write: Callable[[str], None], per_s: int = LOG_PER_S) -> None:
        self.write, self.per_s = write, per_s
        self.window = int(time.monotonic())
        self.written = self.dropped = 0
        self.lock = threading.Lock()

    def __call__(self, text: str) -> None:
        with self.lock:
            now = int(time.monotonic())
            if now != self.window:
                self._say_dropped()
                self.window, self.written = now, 0
            if self.written < self.per_s:
                self.written += 1
                self.write(text)
            else:
                self.dropped += 1

    def flush(self) -> None:
        with self.lock:
            self._say_dropped()

    def _say_dropped(self) -> None:
        if self.dropped:
            self.write(f"… and {self.dropped} more refused")
            self.dropped = 0


def accept_authenticated(server: socket.socket, token: str, role: str, *,
                         refused: Callable[[str], None] = lambda text: None,
                         give_up: Callable[[], bool] = lambda: False,
                         timeout: float | None = None) -> tuple[Connection, dict] | None:
    """The first connection on ``server`` whose peer proves the token, with the peer's
    hello; None when ``give_up()`` turns true or ``timeout`` passes first."""
    return _Acceptor(server, token, role, _RateLimited(refused)).run(give_up, timeout)


def accept_each(server: socket.socket, token: str, role: str,
                on_peer: Callable[[Connection, dict], None], *,
                refused: Callable[[str], None] = lambda text: None,
                give_up: Callable[[], bool] = lambda: False) -> None:
    """Hand every connection whose peer proves the token to ``on_peer`` (on the
    handshake's own thread), the ranks of one job arriving at once among them, until
    ``give_up()`` turns true."""
    _Acceptor(server, token, role, _RateLimited(refused), on_peer).run(give_up, None)


class _Acceptor:
    """The handshakes under way on one listening socket, until one peer proves itself
    (or, with ``on_peer``, for as long as the listening goes on)."""

    def __init__(self, server: socket.socket, token: str, role: str,
                 log: _RateLimited,
                 on_peer: Callable[[Connection, dict], None] | None = None) -> None:
        self.server, self.token, self.role, self.log = server, token, role, log
        self.on_peer = on_peer
        self.winners: queue.Queue = queue.Queue()
        self.chosen = threading.Event()
        self.lock = threading.Lock()  # guards pending and the choice
        self.pending: list[_Pending] = []
        self.waker = Waker()  # a proven peer ends the waiting at once

    def run(self, give_up: Callable[[], bool],
            timeout: float | None) -> tuple[Connection, dict] | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        self.server.settimeout(POLL_S)
        try:
            while not self.chosen.is_set():
                if give_up() or (deadline is not None and time.monotonic() > deadline):
                    return None
                if not self.waker.wait_readable(self.server, POLL_S):
                    continue
                try:
                    sock, _ = self.server.accept()
                except TimeoutError:
                    continue
                self._start(sock)
            return self.winners.get()
        finally:  # the handshakes still under way are strangers': cut them off now
            with self.lock:
                left, self.pending = self.pending, []
            for entry in left:
                entry.evict()
            self.log.flush()
            self.waker.close()

    def _start(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        self._make_room()
        entry = _Pending(sock)
        with self.lock:
            self.pending.append(entry)
        threading.Thread(target=self._handshake, args=(entry,), daemon=True,
                         name="memviz-handshake").start()

    def _make_room(self) -> None:
        """A place for one more handshake: free, or taken from the oldest under way."""
        with self.lock:
            if len(self.pending) < MAX_PENDING:
                return
            victim = self.pending.pop(0)
        victim.evict()

    def _handshake(self, entry: _Pending) -> None:
        result = authenticate(entry.sock, self.token, self.role, self.log)
        if self.on_peer is not None:
            with self.lock:
                if entry not in self.pending:  # evicted: the listening ended meanwhile
                    if result is not None:
                        result[0].close()
                    return
                self.pending.remove(entry)
            if result is not None:
                self.on_peer(*result)
            return
        with self.lock:
            if entry in self.pending:
                self.pending.remove(entry)
            first = result is not None and not self.chosen.is_set()
            if first:
                self.winners.put(result)
                self.chosen.set()
                self.waker.wake()
        if result is not None and not first:  # another peer was proven first
            result[0].close()
