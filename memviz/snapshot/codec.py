"""Columnar tensor-event batches to and from one compact blob.

Time is stored as integer nanosecond deltas (exact, unlike float deltas), ids as
int64 deltas; every column then goes through zlib. Decoding checks every length
and dtype, so a corrupt or hostile blob gives a CodecError, never an oversized
allocation or a crash.
"""

from __future__ import annotations

import zlib

import msgpack
import numpy as np

from ..protocol.messages import EVENT_COLUMNS, EVENT_DTYPES

# As on the wire, except time: stored as integer nanoseconds.
DTYPES = {**EVENT_DTYPES, "t": "<i8"}
DELTA = ("t", "id")
MAX_EVENTS_PER_BATCH = 1 << 22


class CodecError(ValueError):
    pass


def encode(columns: dict[str, np.ndarray]) -> bytes:
    out = {}
    for name in EVENT_COLUMNS:
        values = columns[name]
        if name == "t":
            values = np.round(np.asarray(values, dtype=np.float64) * 1e9)
        arr = np.ascontiguousarray(values, dtype=DTYPES[name])
        if name in DELTA and len(arr):
            arr = np.diff(arr, prepend=arr[:1] * 0).astype(DTYPES[name])
        out[name] = zlib.compress(arr.tobytes(), 6)
    return msgpack.packb({"n": len(columns["t"]), "c": out}, use_bin_type=True)


def decode(blob: bytes, max_events: int = MAX_EVENTS_PER_BATCH,
           only: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """One batch's columns (``only`` those named: each column is inflated on its own);
    a batch claiming more than ``max_events`` is refused before anything is inflated."""
    try:
        obj = msgpack.unpackb(blob, raw=False, strict_map_key=True)
        count = int(obj["n"])
        stored = obj["c"]
    except Exception as exc:
        raise CodecError(f"unreadable event batch: {exc}") from None
    if not 0 <= count <= MAX_EVENTS_PER_BATCH or set(stored) != set(EVENT_COLUMNS):
        raise CodecError("event batch has the wrong size or columns")
    if count > max_events:
        raise CodecError(f"the file claims more tensor events than its size can hold "
                         f"({count:,} in one batch, {max(max_events, 0):,} left)")
    columns = {}
    for name in EVENT_COLUMNS if only is None else only:
        dtype = np.dtype(DTYPES[name])
        want = count * dtype.itemsize
        try:
            inflater = zlib.decompressobj()
            raw = inflater.decompress(stored[name], want + 1)  # never inflate past the size
        except (zlib.error, TypeError) as exc:
            raise CodecError(f"event column {name} is corrupt: {exc}") from None
        if len(raw) != want:
            raise CodecError(f"event column {name} has {len(raw)} bytes, expected {want}")
        arr = np.frombuffer(raw, dtype=dtype)
        if name in DELTA:
            arr = np.cumsum(arr, dtype=dtype)
        columns[name] = arr / 1e9 if name == "t" else arr
    return columns
