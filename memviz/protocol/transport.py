"""A framed, validated, thread-safe message connection over a stream socket."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from .framing import HEADER, MAX_FRAME_BYTES, FrameError, decode_payload, encode_frame, read_length
from .messages import ProtocolError, validate_message


class ConnectionClosed(EOFError):
    """The peer closed the connection (cleanly, between frames)."""


class HandshakeTimeout(ProtocolError):
    """The peer did not finish its part in time."""


class Connection:
    """Send and receive batches of messages over a connected socket.

    ``send`` may be called from several threads; ``receive`` from one. Any
    malformed input raises FrameError / ProtocolError; the caller closes.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._closed = False

    def send(self, messages: list[dict]) -> None:
        self.send_frame(encode_frame(messages))

    def send_frame(self, frame: bytes) -> None:
        """Send an already encoded frame (see framing.frames_of)."""
        with self._send_lock:
            self.sock.sendall(frame)

    def _read_exact(self, n: int, *, at_boundary: bool, deadline: float | None) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HandshakeTimeout("the peer did not complete the handshake in time")
                self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except TimeoutError:
                if deadline is not None:
                    raise HandshakeTimeout(
                        "the peer did not complete the handshake in time") from None
                raise
            if not chunk:
                if at_boundary and not buf:
                    raise ConnectionClosed("peer closed the connection")
                raise FrameError(f"truncated frame: got {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def receive(self, *, max_bytes: int = MAX_FRAME_BYTES,
                deadline: float | None = None) -> list[dict]:
        """Block for the next frame and return its validated messages.

        ``max_bytes`` caps this frame (a peer not yet proven gets a few KiB);
        ``deadline`` (time.monotonic) bounds the whole read, however slowly the
        peer trickles its bytes."""
        header = self._read_exact(HEADER.size, at_boundary=True, deadline=deadline)
        length = read_length(header)
        if length > max_bytes:
            raise FrameError(f"frame of {length} bytes exceeds the {max_bytes} allowed here")
        payload = self._read_exact(length, at_boundary=False, deadline=deadline)
        if deadline is not None:
            self.sock.settimeout(None)
        messages = decode_payload(payload)
        for msg in messages:
            validate_message(msg)
        return messages

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


__all__ = ["Connection", "ConnectionClosed", "FrameError", "HandshakeTimeout", "ProtocolError"]
