"""The first exchange on a connection: versions and the per-run token.

Each side sends ``hello`` first, then reads the peer's. A peer that speaks
another protocol version or shows the wrong token is refused with a message
that says which; the token is compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets

from .. import __version__
from .messages import ProtocolError
from .transport import Connection

PROTOCOL_VERSION = 1
HANDSHAKE_TIMEOUT_S = 30.0


def new_token() -> str:
    return secrets.token_hex(16)


def hello(token: str, role: str) -> dict:
    return {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "memviz_version": __version__,
        "token": token,
        "role": role,
    }


def perform(conn: Connection, token: str, role: str) -> dict:
    """Exchange hellos; return the peer's hello or raise ProtocolError."""
    previous = conn.sock.gettimeout()
    conn.sock.settimeout(HANDSHAKE_TIMEOUT_S)
    try:
        conn.send([hello(token, role)])
        try:
            messages = conn.receive()
        except TimeoutError:
            raise ProtocolError("the peer did not complete the handshake in time") from None
    finally:
        conn.sock.settimeout(previous)
    if len(messages) != 1 or messages[0]["type"] != "hello":
        raise ProtocolError("the peer did not start with hello")
    peer = messages[0]
    if peer["protocol"] != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version mismatch: this side speaks {PROTOCOL_VERSION}, "
            f"the peer (memviz {peer['memviz_version']}) speaks {peer['protocol']}"
        )
    if not hmac.compare_digest(peer["token"].encode(), token.encode()):
        raise ProtocolError("the peer presented the wrong token")
    return peer
