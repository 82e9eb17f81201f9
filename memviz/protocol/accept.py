"""Accept the first peer that proves itself; strangers cost little and change nothing.

Each incoming connection gets its own short handshake (capped frames, one
deadline). A peer that fails, stalls or hangs up is logged and dropped, and the
listener goes on waiting, so a port scanner or a guessing peer can neither take
the place of the real one nor lock it out. At most ``MAX_PENDING`` handshakes run
at once; connections beyond that are closed at once.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable

from .framing import FrameError
from .handshake import perform
from .messages import ProtocolError
from .transport import Connection, ConnectionClosed

MAX_PENDING = 16
POLL_S = 0.2


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
        return conn, perform(conn, token, role)
    except (ProtocolError, FrameError, ConnectionClosed, OSError) as exc:
        refused(f"refused {who}: {exc}")
    conn.close()
    return None


def accept_authenticated(server: socket.socket, token: str, role: str, *,
                         refused: Callable[[str], None] = lambda text: None,
                         give_up: Callable[[], bool] = lambda: False,
                         timeout: float | None = None) -> tuple[Connection, dict] | None:
    """The first connection on ``server`` whose peer proves the token, with the peer's
    hello; None when ``give_up()`` turns true or ``timeout`` passes first."""
    winners: queue.Queue = queue.Queue()
    pending = threading.BoundedSemaphore(MAX_PENDING)
    chosen = threading.Event()
    choosing = threading.Lock()
    deadline = None if timeout is None else time.monotonic() + timeout

    def handshake(sock: socket.socket) -> None:
        try:
            result = authenticate(sock, token, role, refused)
            if result is None:
                return
            with choosing:
                first = not chosen.is_set()
                if first:
                    winners.put(result)
                    chosen.set()
            if not first:  # another peer was proven first
                result[0].close()
        finally:
            pending.release()

    server.settimeout(POLL_S)
    while not chosen.is_set():
        if give_up() or (deadline is not None and time.monotonic() > deadline):
            return None
        try:
            sock, _ = server.accept()
        except TimeoutError:
            continue
        sock.settimeout(None)
        if not pending.acquire(blocking=False):
            refused(f"refused {describe_peer(sock)}: too many handshakes at once")
            sock.close()
            continue
        threading.Thread(target=handshake, args=(sock,), daemon=True,
                         name="memviz-handshake").start()
    return winners.get()
