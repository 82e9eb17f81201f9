"""The message types and the fields each one must carry.

Every message is a dict with a ``type``. Validation checks the required fields
and their kinds, so a peer that sends nonsense gets a clear error instead of a
KeyError deep inside a view.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.stream import SAMPLE_COLUMNS, STRING_TABLES, ProtocolError

__all__ = ["EVENT_COLUMNS", "EVENT_DTYPES", "MESSAGE_TYPES", "PHASE_NAMES", "SAMPLE_COLUMNS",
           "STRING_TABLES", "ProtocolError", "validate_message"]


_NUM = (int, float)
_ARR = (np.ndarray,)

# type -> {field: accepted python types}
MESSAGE_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    # handshake, both directions
    # (hello carries ``nonce`` and ``role`` too; the handshake checks them after the
    # version, so a peer of another version is told so)
    "hello": {"protocol": (int,)},
    "proof": {"mac": (str,), "memviz_version": (str,)},
    # controller -> worker
    "start": {"spec": (dict,)},
    "stop": {},
    "detail": {},  # record the next step with the per-op tracker
    # controller <-> warm parent (worker/zygote.py)
    "fork": {"connect": (str,), "token": (str,), "log": (str,)},
    "forked": {"pid": (int,), "started": _NUM},
    "exited": {"pid": (int,), "code": (int,)},
    # worker -> controller
    "run_started": {"spec": (dict,), "environment": (dict,), "model": (dict,), "t0_wall": _NUM},
    # a tracked program's model and workload, once found (memviz.track)
    "discovered": {"spec": (dict,), "model": (dict,)},
    "samples": {"columns": (dict,)},
    "phase": {"t": _NUM, "step": (int,), "name": (str,), "edge": (str,)},
    "step_done": {
        "t": _NUM,
        "step": (int,),
        "loss": (float, int, type(None)),
        "seconds": _NUM,
        "tokens": (int,),
        "peak_rss_bytes": (int,),
        "peak_gpu_bytes": (int, type(None)),
    },
    "run_done": {"t": _NUM, "reason": (str,), "summary": (dict,)},
    "error": {"kind": (str,), "message": (str,), "traceback": (str,)},
    "log": {"t": _NUM, "level": (str,), "text": (str,)},
    # tensor tracking (see memviz.tracking)
    "strings": {"entries": (list,)},
    "stacks": {"entries": (list,)},
    "tensor_events": {"columns": (dict,)},
    "mark": {"t": _NUM, "step": (int,), "label": (str,), "live_by_category": (dict,)},
    "cuda_memory": {"t": _NUM, "step": (int,), "reserved": (int,), "allocated": (int,),
                    "segments": (int,), "largest_free_block": (int,), "by_category": (dict,),
                    "torch_allocated": (int,), "tracked_rounded": (int,)},
}

PHASE_NAMES = ("forward", "backward", "optimizer", "generate", "load")
# Tensor events: each column and its type on the wire. The tracker builds them, the
# snapshot codec stores them; both take the types from here.
EVENT_DTYPES = {
    "t": "<f8", "id": "<i8", "kind": "u1", "nbytes": "<i8", "category": "u1", "offset": "<i8",
    "dtype": "<i4", "shape": "<i4", "device": "<i4", "module": "<i4", "op": "<i4",
    "phase": "u1", "step": "<i4", "stack": "<i4",
}
EVENT_COLUMNS = tuple(EVENT_DTYPES)


def validate_message(msg: Any) -> dict:
    """Return ``msg`` if it is a well-formed message, else raise ProtocolError."""
    if not isinstance(msg, dict):
        raise ProtocolError("a message must be a map")
    kind = msg.get("type")
    fields = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise ProtocolError(f"unknown message type {kind!r}")
    for name, types in fields.items():
        if name not in msg:
            raise ProtocolError(f"{kind} message lacks field {name!r}")
        value = msg[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ProtocolError(f"{kind}.{name} has the wrong kind: {type(value).__name__}")
    if kind == "phase" and msg["edge"] not in ("begin", "end"):
        raise ProtocolError(f"phase.edge must be begin or end, not {msg['edge']!r}")
    if kind == "samples":
        cols = msg["columns"]
        lengths = set()
        for name, col in cols.items():
            if name not in SAMPLE_COLUMNS or not isinstance(col, _ARR):
                raise ProtocolError(f"samples column {name!r} is unknown or not an array")
            lengths.add(len(col))
        if "t" not in cols or len(lengths) != 1:
            raise ProtocolError("samples columns must include t and have one length")
    if kind == "tensor_events":
        cols = msg["columns"]
        if set(cols) != set(EVENT_COLUMNS) or not all(isinstance(c, _ARR) for c in cols.values()):
            raise ProtocolError("tensor_events must carry exactly the event columns as arrays")
        if len({len(c) for c in cols.values()}) != 1:
            raise ProtocolError("tensor_events columns must have one length")
    if kind == "strings":
        for entry in msg["entries"]:
            if not (isinstance(entry, list) and len(entry) == 3 and entry[0] in STRING_TABLES
                    and isinstance(entry[1], int) and entry[1] >= 0
                    and isinstance(entry[2], str)):
                raise ProtocolError("strings entries must be [table, id, text]")
    if kind == "stacks":
        for entry in msg["entries"]:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int)
                    and isinstance(entry[1], list)
                    and all(isinstance(f, int) for f in entry[1])):
                raise ProtocolError("stacks entries must be [id, [frame ids]]")
    return msg
