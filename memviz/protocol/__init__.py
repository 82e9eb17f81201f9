"""Wire protocol between the worker and whoever watches it (GUI, CLI, recorder).

A connection starts with a handshake (see :mod:`.handshake`), then carries
length-prefixed msgpack frames; each frame is a batch of messages.

The names below are loaded on first use: a process that only listens on an address
or makes a token (``memviz record`` starting its program) does not pay for msgpack
and numpy before it can start it.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "MAX_FRAME_BYTES": "framing", "FrameError": "framing", "decode_payload": "framing",
    "encode_frame": "framing", "PROTOCOL_VERSION": "handshake",
    "MESSAGE_TYPES": "messages", "ProtocolError": "messages",
    "validate_message": "messages", "Connection": "transport",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
