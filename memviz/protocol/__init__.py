"""Wire protocol between the worker and whoever watches it (GUI, CLI, recorder).

A connection starts with a handshake (see :mod:`.handshake`), then carries
length-prefixed msgpack frames; each frame is a batch of messages.
"""

from .framing import MAX_FRAME_BYTES, FrameError, decode_payload, encode_frame
from .handshake import PROTOCOL_VERSION
from .messages import MESSAGE_TYPES, ProtocolError, validate_message
from .transport import Connection

__all__ = [
    "MAX_FRAME_BYTES",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "Connection",
    "FrameError",
    "ProtocolError",
    "decode_payload",
    "encode_frame",
    "validate_message",
]
