"""Length-prefixed msgpack frames, with numpy arrays carried as raw bytes.

A frame is a 4-byte big-endian length followed by a msgpack payload: a list of
messages (dicts). Numpy arrays travel as a msgpack extension holding a one-byte
dtype code and the raw little-endian bytes, so a batch of 10k samples costs one
memcpy instead of 10k Python floats. Only the dtypes listed below are accepted:
a peer can never make the decoder build an arbitrary object.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import numpy as np

MAX_FRAME_BYTES = 32 * 1024 * 1024
FRAME_TARGET_BYTES = 8 * 1024 * 1024  # what the emitter aims for; well under the maximum
HEADER = struct.Struct(">I")
NDARRAY_EXT = 1

_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f8"),
    2: np.dtype("<f4"),
    3: np.dtype("<i8"),
    4: np.dtype("<i4"),
    5: np.dtype("<u8"),
    6: np.dtype("<u4"),
    7: np.dtype("<i2"),
    8: np.dtype("u1"),
    9: np.dtype("i1"),
    10: np.dtype("<u2"),
}
_CODES = {dt: code for code, dt in _DTYPES.items()}


class FrameError(ValueError):
    """A frame that cannot be decoded: too large, truncated or not msgpack."""


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        dt = obj.dtype.newbyteorder("<") if obj.dtype.byteorder == ">" else obj.dtype
        code = _CODES.get(np.dtype(dt))
        if code is None or obj.ndim != 1:
            raise TypeError(f"cannot send array of dtype {obj.dtype} with {obj.ndim} dims")
        data = np.ascontiguousarray(obj, dtype=_DTYPES[code]).tobytes()
        return msgpack.ExtType(NDARRAY_EXT, bytes([code]) + data)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot send {type(obj).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != NDARRAY_EXT or not data:
        raise FrameError(f"unknown extension type {code}")
    dtype = _DTYPES.get(data[0])
    if dtype is None:
        raise FrameError(f"unknown array dtype code {data[0]}")
    body = memoryview(data)[1:]
    if len(body) % dtype.itemsize:
        raise FrameError("array bytes are not a whole number of elements")
    return np.frombuffer(body, dtype=dtype)


def encode_payload(messages: list[dict]) -> bytes:
    return msgpack.packb(messages, default=_default, use_bin_type=True)


def encode_frame(messages: list[dict]) -> bytes:
    """One frame holding ``messages``; raises FrameError if it would be too large."""
    payload = encode_payload(messages)
    if len(payload) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    return HEADER.pack(len(payload)) + payload


def pack_message(message: dict) -> bytes:
    """One message packed on its own, to be joined into frames by ``frames_of``."""
    return msgpack.packb(message, default=_default, use_bin_type=True)


def frames_of(packed: list[bytes], target_bytes: int = FRAME_TARGET_BYTES) -> list[bytes]:
    """Join packed messages into frames of about ``target_bytes`` each (a message larger
    than that travels alone, as long as it fits under MAX_FRAME_BYTES)."""
    frames: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for part in packed:
        if len(part) > MAX_FRAME_BYTES - 16:
            raise FrameError(f"a message of {len(part)} bytes cannot fit in a frame")
        if group and size + len(part) > target_bytes:
            frames.append(_frame(group, size))
            group, size = [], 0
        group.append(part)
        size += len(part)
    if group:
        frames.append(_frame(group, size))
    return frames


def _frame(group: list[bytes], size: int) -> bytes:
    header = msgpack.Packer().pack_array_header(len(group))
    return HEADER.pack(len(header) + size) + header + b"".join(group)


def decode_payload(payload: bytes | memoryview) -> list[dict]:
    """Decode one frame's payload into its list of messages."""
    try:
        obj = msgpack.unpackb(
            payload,
            ext_hook=_ext_hook,
            raw=False,
            strict_map_key=True,
        )
    except FrameError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types
        raise FrameError(f"malformed frame: {exc}") from None
    if not isinstance(obj, list) or not all(isinstance(m, dict) for m in obj):
        raise FrameError("a frame must be a list of messages")
    return obj

