"""Accept the first peer that proves itself; strangers cost little and change nothing.

Each incoming connection gets its own short handshake (capped frames, one
deadline). A peer that fails, stalls or hangs up is logged and dropped, and the
listener goes on waiting, so a port scanner or a guessing peer can neither take
the place of the real one nor lock it out. At most ``MAX_PENDING`` handshakes run
at once. When they are all taken, a newcomer takes the place of the oldest that
has not said anything yet, or of the oldest that has lasted ``STALE_S`` (the owner
proves itself in milliseconds): strangers that connect and stay silent, however
many and however fast they reconnect, cannot keep the owner out. Refusals are
logged at most ``LOG_PER_S`` a second; the rest are counted and said in one line.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable

from .framing import MAX_FRAME_BYTES, FrameError
from .handshake import perform
from .messages import ProtocolError
from .transport import Connection, ConnectionClosed
from .waker import Waker

MAX_PENDING = 16
POLL_S = 0.2
STALE_S = 1.0  # a handshake this old may give its place to a newcomer
LOG_PER_S = 5


class _Heard(Connection):
    """A connection that says when its peer first spoke."""

    def __init__(self, sock: socket.socket, heard: threading.Event) -> None:
        super().__init__(sock)
        self.heard = heard

    def receive(self, *, max_bytes: int = MAX_FRAME_BYTES,
                deadline: float | None = None) -> list[dict]:
        messages = super().receive(max_bytes=max_bytes, deadline=deadline)
        self.heard.set()
        return messages


def describe_peer(sock: socket.socket) -> str:
    try:
        peer = sock.getpeername()
    except OSError:
        return "a peer"
    if isinstance(peer, tuple):
        return f"{peer[0]}:{peer[1]}"
    return "a local peer"


def authenticate(sock: socket.socket, token: str, role: str,
                 refused: Callable[[str], None],
                 heard: threading.Event | None = None) -> tuple[Connection, dict] | None:
    """One connection's handshake: the connection and the peer, or None (refused).
    ``heard`` is set once the peer has said anything."""
    conn = Connection(sock) if heard is None else _Heard(sock, heard)
    who = describe_peer(sock)
    try:
        return conn, perform(conn, token, role)
    except (ProtocolError, FrameError, ConnectionClosed, OSError) as exc:
        refused(f"refused {who}: {exc}")
    conn.close()
    return None


class _Pending:
    """One handshake under way: its socket, when it began, whether its peer spoke."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.began = time.monotonic()
        self.heard = threading.Event()

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
        if not self._make_room():
            self.log(f"refused {describe_peer(sock)}: too many handshakes at once")
            sock.close()
            return
        entry = _Pending(sock)
        with self.lock:
            self.pending.append(entry)
        threading.Thread(target=self._handshake, args=(entry,), daemon=True,
                         name="memviz-handshake").start()

    def _make_room(self) -> bool:
        """A place for one more handshake: free, or taken from a silent or stale one."""
        with self.lock:
            if len(self.pending) < MAX_PENDING:
                return True
            now = time.monotonic()
            victim = next((e for e in self.pending if not e.heard.is_set()), None) or next(
                (e for e in self.pending if now - e.began > STALE_S), None)
            if victim is None:
                return False
            self.pending.remove(victim)
        victim.evict()
        return True

    def _handshake(self, entry: _Pending) -> None:
        result = authenticate(entry.sock, self.token, self.role, self.log, heard=entry.heard)
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
