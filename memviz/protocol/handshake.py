"""The first exchange on a connection: mutual proof of the shared token.

The token never travels. Each side sends ``hello`` with its protocol version
and a fresh random nonce, then proves that it knows the token with an HMAC over
its role and both nonces (``proof``). The controller proves first; a worker, a
rank or a recorded program proves only after it has checked the controller's
proof, so a side that runs code or holds data says nothing but its nonce to a
peer that has not proven itself. Binding the sender's role and both fresh
nonces into each proof stops a proof from being replayed or reflected.

A proof says who was there at the start, not who sends the frames after it: a
stranger that holds the address the owner dials can pass the owner's proof on to
another worker of the same owner. So both ends then derive a key for each
direction from the token, both roles and both nonces, and every later frame is
tagged under it (:mod:`.transport`): a relay forwards, but can write nothing.

Until the peer is proven its frames are capped at ``PRE_AUTH_MAX_FRAME`` bytes
and the whole exchange at ``HANDSHAKE_DEADLINE_S``, however slowly the peer
trickles its bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

from ..version import __version__
from . import token as tokens
from .messages import ProtocolError
from .transport import AuthenticationError, Connection, HandshakeTimeout

__all__ = ["AuthenticationError", "HandshakeTimeout", "channel_keys", "new_token", "perform",
           "proof"]

PROTOCOL_VERSION = 3
HANDSHAKE_DEADLINE_S = 10.0
PRE_AUTH_MAX_FRAME = 4096
ROLES = ("controller", "worker", "rank", "program")
_NONCE = re.compile(r"^[0-9a-f]{32}$")


def new_token() -> str:
    """A token of 256 random bits (``token.new_token``)."""
    return tokens.new_token()


def _mac(token: str, message: str) -> bytes:
    return hmac.new(token.encode(), message.encode(), hashlib.sha256).digest()


def proof(token: str, sender_role: str, receiver_role: str, sender_nonce: str,
          receiver_nonce: str) -> str:
    return _mac(token, f"memviz/{PROTOCOL_VERSION} proof {sender_role}>{receiver_role} "
                       f"{sender_nonce} {receiver_nonce}").hex()


def channel_keys(token: str, role: str, nonce: str, peer_role: str,
                 peer_nonce: str) -> tuple[bytes, bytes]:
    """This side's (send, receive) keys: one key a direction, each bound to both roles
    and both nonces, so that no frame of one connection or direction passes in another."""
    def key(sender: str, sender_nonce: str, receiver: str, receiver_nonce: str) -> bytes:
        return _mac(token, f"memviz/{PROTOCOL_VERSION} frames {sender}>{receiver} "
                           f"{sender_nonce} {receiver_nonce}")
    return (key(role, nonce, peer_role, peer_nonce), key(peer_role, peer_nonce, role, nonce))


def _receive_one(conn: Connection, deadline: float, kind: str) -> dict:
    messages = conn.receive(max_bytes=PRE_AUTH_MAX_FRAME, deadline=deadline)
    if len(messages) != 1 or messages[0]["type"] != kind:
        raise ProtocolError(f"the peer did not send {kind} when the handshake needed it")
    return messages[0]


def _check_hello(peer: dict, role: str) -> tuple[str, str]:
    version = peer["protocol"]
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version mismatch: this side speaks {PROTOCOL_VERSION}, the peer speaks "
            f"{version} (use the same memviz version on both sides)")
    nonce, peer_role = peer.get("nonce"), peer.get("role")
    if not isinstance(nonce, str) or not _NONCE.match(nonce):
        raise ProtocolError("the peer's hello carries no valid nonce")
    if peer_role not in ROLES:
        raise ProtocolError(f"the peer's role {str(peer_role)[:20]!r} is not one of "
                            f"{', '.join(ROLES)}")
    if (peer_role == "controller") == (role == "controller"):
        raise ProtocolError(f"a {role} cannot be driven by a {peer_role}")
    return nonce, peer_role


def perform(conn: Connection, token: str, role: str,
            deadline_s: float = HANDSHAKE_DEADLINE_S) -> dict:
    """Prove ``role`` and check the peer; return ``{"role", "memviz_version"}`` of the
    peer, or raise ProtocolError (AuthenticationError for a wrong proof). On success
    ``conn`` is secured: every later frame is tagged and checked."""
    if not token:
        raise ProtocolError("no token: the handshake needs the shared secret")
    deadline = time.monotonic() + deadline_s
    nonce = secrets.token_hex(16)
    conn.send([{"type": "hello", "protocol": PROTOCOL_VERSION, "nonce": nonce, "role": role}])
    peer_nonce, peer_role = _check_hello(_receive_one(conn, deadline, "hello"), role)
    mine = {"type": "proof", "mac": proof(token, role, peer_role, nonce, peer_nonce),
            "memviz_version": __version__}
    if role == "controller":
        conn.send([mine])
    theirs = _receive_one(conn, deadline, "proof")
    expected = proof(token, peer_role, role, peer_nonce, nonce)
    mac = theirs.get("mac")
    if not isinstance(mac, str) or not hmac.compare_digest(mac.encode(), expected.encode()):
        raise AuthenticationError("the peer could not prove it knows the token")
    if role != "controller":
        conn.send([mine])
    conn.secure(*channel_keys(token, role, nonce, peer_role, peer_nonce))
    version = theirs.get("memviz_version")
    return {"role": peer_role, "memviz_version": (version if isinstance(version, str)
                                                  else "?")[:40]}
