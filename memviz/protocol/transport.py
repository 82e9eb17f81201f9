"""A framed, validated, thread-safe message connection over a stream socket.

Once the handshake has proven both ends, every frame carries a tag: a keyed
BLAKE2b over the frame's sequence number in its direction, its header and its
payload, under that direction's key (both keys derived from the token and both
nonces, see :mod:`.handshake`). Whoever sits between the two ends (a relay that
passed a real handshake along) can neither inject a frame nor replay, reorder,
alter or drop one without the next frame failing its check.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import socket
import threading
import time

from .framing import HEADER, MAX_FRAME_BYTES, FrameError, decode_payload, encode_frame
from .messages import ProtocolError, validate_message

TAG_BYTES = 32
_SEQUENCE = 8  # bytes of the sequence number the tag covers


class AuthenticationError(ProtocolError):
    """The peer could not prove it knows the token, or a frame was not the peer's."""


def frame_tag(key: bytes, sequence: int, header: bytes, payload: bytes | memoryview) -> bytes:
    mac = hashlib.blake2b(key=key, digest_size=TAG_BYTES)
    mac.update(sequence.to_bytes(_SEQUENCE, "big"))
    mac.update(header)
    mac.update(payload)
    return mac.digest()


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
        self._send_key: bytes | None = None
        self._receive_key: bytes | None = None
        self._sent = 0  # frames sent and received under the keys
        self._received = 0

    @property
    def secured(self) -> bool:
        return self._send_key is not None

    def secure(self, send_key: bytes, receive_key: bytes) -> None:
        """From now on every frame is tagged under ``send_key`` and every frame
        received must carry a tag under ``receive_key`` (see the module's doc)."""
        with self._send_lock:
            self._send_key, self._receive_key = send_key, receive_key
            self._sent = self._received = 0

    def send(self, messages: list[dict]) -> None:
        self.send_frame(encode_frame(messages))

    def send_frame(self, frame: bytes) -> None:
        """Send an already encoded frame (see framing.frames_of)."""
        with self._send_lock:
            if self._send_key is None:
                self.sock.sendall(frame)
                return
            payload = memoryview(frame)[HEADER.size:]
            header = HEADER.pack(len(payload) + TAG_BYTES)
            tag = frame_tag(self._send_key, self._sent, header, payload)
            self._sent += 1
            self.sock.sendall(b"".join((header, payload, tag)))

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
        (length,) = HEADER.unpack(header)
        key = self._receive_key
        allowed = max_bytes + (TAG_BYTES if key is not None else 0)
        if length > allowed:
            raise FrameError(f"frame of {length} bytes exceeds the {allowed} allowed here")
        if key is not None and length < TAG_BYTES:
            raise AuthenticationError("a frame came without its tag: it was not the peer's")
        body = self._read_exact(length, at_boundary=False, deadline=deadline)
        if deadline is not None:
            self.sock.settimeout(None)
        payload: bytes | memoryview = body
        if key is not None:
            payload = memoryview(body)[:-TAG_BYTES]
            expected = frame_tag(key, self._received, header, payload)
            if not hmac.compare_digest(expected, body[-TAG_BYTES:]):
                raise AuthenticationError(
                    "a frame failed its check: it was altered, replayed, reordered or "
                    "sent by someone other than the peer that proved itself")
            self._received += 1
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


__all__ = ["AuthenticationError", "Connection", "ConnectionClosed", "FrameError",
           "HandshakeTimeout", "ProtocolError"]
