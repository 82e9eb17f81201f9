"""Open a PyTorch memory snapshot (``torch.cuda.memory._dump_snapshot``: pickle, or JSON)
as a Run, so the same views show a GPU cluster's run on a workstation.

Pickles are read by an unpickler that admits no class at all: a snapshot is
plain dicts, lists, strings and numbers, and anything else (a hostile pickle
that would open a file or run a command when loaded) is refused before any of
it runs. Trace entries become allocations (their ``category`` where present,
``other`` for torch's ``unknown``); blocks still active at the end with no
``alloc`` entry existed before recording began and start at time 0.
"""

from __future__ import annotations

import io
import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..core.categories import CODE
from ..core.run import Run
from ..core.spec import RunSpec
from ..core.text import printable

MAX_BYTES = 4 << 30


class TorchSnapshotError(ValueError):
    pass


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        raise TorchSnapshotError(
            f"refused: the pickle asks for {module}.{name}; a PyTorch memory snapshot holds "
            "plain containers and numbers only, so nothing in it was run")


def looks_like_torch_snapshot(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(2)
    return head[:1] == b"\x80" or head.lstrip()[:1] == b"{"


def load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.stat().st_size > MAX_BYTES:
        raise TorchSnapshotError(f"{path}: larger than {MAX_BYTES >> 30} GiB")
    raw = path.read_bytes()
    try:
        is_pickle = raw[:1] == b"\x80"
        data = _PlainUnpickler(io.BytesIO(raw)).load() if is_pickle else json.loads(raw)
    except TorchSnapshotError as exc:
        raise TorchSnapshotError(f"{path}: {exc}") from None
    except Exception as exc:
        raise TorchSnapshotError(f"{path}: not a readable PyTorch snapshot ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("segments", []), list) or \
            not isinstance(data.get("device_traces", []), list):
        raise TorchSnapshotError(f"{path}: not a PyTorch memory snapshot (no segments or "
                                 "device_traces)")
    return data


# An honest snapshot spends tens of bytes on each trace entry or block, even with
# pickle's memo; a file whose entries (memo references to one object, say) outnumber
# one per ENTRY_FLOOR_BYTES lies about itself and is refused before it is walked.
ENTRY_FLOOR_BYTES = 8
ENTRY_SLACK = 1 << 12
FRAME_TEXT_MAX = 300


def _category(entry: dict) -> int:
    name = entry.get("category")
    return CODE.get(name, CODE["other"]) if isinstance(name, str) else CODE["other"]


def _whole(value: Any, what: str) -> int:
    """A byte count or address: a whole number from 0 to 2**63 (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
        raise TorchSnapshotError(f"{what} is not a whole number of bytes ({str(value)[:40]})")
    return value


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _frame_text(frame: dict) -> str:
    parts = [frame.get("filename", "?"), frame.get("line", 0), frame.get("name", "?")]
    return printable(":".join(str(p)[:FRAME_TEXT_MAX] for p in parts), one_line=True)


def _checked(data: dict[str, Any], file_bytes: int | None) -> tuple[list, list]:
    """The segments and device traces, with every element of the kind the walk expects."""
    segments = data.get("segments", [])
    traces = data.get("device_traces", [])
    if not all(isinstance(s, dict) for s in segments):
        raise TorchSnapshotError("a segment is not a map")
    for seg in segments:
        blocks = seg.get("blocks", [])
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            raise TorchSnapshotError("a segment's blocks are not a list of maps")
    if not all(isinstance(t, list) for t in traces):
        raise TorchSnapshotError("a device trace is not a list")
    if file_bytes is not None:
        entries = sum(len(t) for t in traces) + sum(len(s.get("blocks", []))
                                                     for s in segments) + len(segments)
        if entries > ENTRY_SLACK + file_bytes // ENTRY_FLOOR_BYTES:
            raise TorchSnapshotError(
                f"it claims {entries:,} entries, more than a {file_bytes:,}-byte file can hold")
    return segments, traces


def to_run(data: dict[str, Any], name: str, run_id: int = 0,
           file_bytes: int | None = None) -> Run:
    """One device's trace (the busiest) and its segments, as a Run. ``file_bytes``: the
    size of the file it came from, which bounds how many entries it may claim."""
    segments, traces = _checked(data, file_bytes)
    device = max(range(len(traces)), key=lambda i: len(traces[i])) if traces else 0
    trace = traces[device] if traces else []
    segments = [s for s in segments if s.get("device", device) == device]
    # lay the segments end to end, so offsets stay compact on a sparse address space
    starts, cursor = [], 0
    for seg in sorted(segments, key=lambda s: _whole(s.get("address", 0), "an address")):
        size = _whole(seg.get("total_size", 0), "a segment size")
        starts.append((_whole(seg.get("address", 0), "an address"), size, cursor))
        cursor += size
    bases = np.array([b for b, _, _ in starts], dtype=np.int64)

    def offset_of(addr: int) -> int:
        i = int(np.searchsorted(bases, addr, side="right")) - 1
        if i >= 0:
            base, size, at = starts[i]
            if addr < base + size:
                return at + addr - base
        return cursor + (addr % (1 << 30))

    times = [_seconds(e.get("time_us")) if isinstance(e, dict) else None for e in trace]
    by_index = not times or any(t is None for t in times)
    t0 = 0.0 if by_index else min(times)
    blocks = [b for seg in segments for b in seg.get("blocks", [])
              if b.get("state") == "active_allocated"]
    capacity = len(trace) + len(blocks)
    # one preallocated row per allocation: t_alloc, t_free, nbytes, category, offset, stack
    t_alloc = np.zeros(capacity)
    t_free = np.full(capacity, np.nan)
    nbytes = np.zeros(capacity, np.int64)
    category = np.full(capacity, CODE["other"], np.uint8)
    offset = np.zeros(capacity, np.int64)
    stack = np.full(capacity, -1, np.int32)
    count = 0
    live: dict[int, int] = {}
    frame_ids: dict[str, int] = {}
    stack_ids: dict[tuple, int] = {}
    stack_by_list: dict[int, int] = {}  # id() of a frames list → its stack (memo refs)

    def stack_of(entry: dict) -> int:
        frames = entry.get("frames")
        if not isinstance(frames, list) or not frames:
            return -1
        known = stack_by_list.get(id(frames))
        if known is not None:
            return known
        ids = tuple(frame_ids.setdefault(_frame_text(f), len(frame_ids))
                    for f in frames[:64] if isinstance(f, dict))
        found = stack_ids.setdefault(ids, len(stack_ids)) if ids else -1
        stack_by_list[id(frames)] = found
        return found

    for index, entry in enumerate(trace):
        if not isinstance(entry, dict):
            continue
        t = index * 1e-6 if by_index else (times[index] - t0) / 1e6
        action = entry.get("action")
        if action == "alloc":
            addr = _whole(entry.get("addr", 0), "an address")
            live[addr] = count
            t_alloc[count] = t
            nbytes[count] = _whole(entry.get("size", 0), "a size")
            category[count] = _category(entry)
            offset[count] = offset_of(addr)
            stack[count] = stack_of(entry)
            count += 1
        elif action == "free_completed":
            row = live.pop(_whole(entry.get("addr", 0), "an address"), None)
            if row is not None:
                t_free[row] = t
    end = float(t_alloc[count - 1]) if count else 0.0
    seen = set(offset[:count][np.isnan(t_free[:count])].tolist())
    existing = 0
    for block in blocks:  # active at the end, never traced: they existed before recording
        off = offset_of(_whole(block.get("address", 0), "an address"))
        if off not in seen:
            t_alloc[count], nbytes[count] = 0.0, _whole(block.get("size", 0), "a block size")
            offset[count], stack[count] = off, stack_of(block)
            count += 1
            existing += 1
    order = np.argsort(t_alloc[:count], kind="stable")
    if existing:  # the pre-existing blocks come first, at time 0, as they were
        order = np.r_[np.arange(count - existing, count), order[order < count - existing]]
    n = count
    run = Run(RunSpec(model=printable(name, one_line=True), steps=1), run_id=run_id)
    run.state = "finished"
    run.environment = {"imported": "PyTorch memory snapshot", "device": device}
    run.model = {"name": run.spec.model, "class": "PyTorch snapshot", "module_tree": []}
    columns = {
        "t": t_alloc[order], "id": np.arange(n), "kind": np.zeros(n, np.uint8),
        "nbytes": nbytes[order], "category": category[order], "offset": offset[order],
        **{c: np.full(n, -1, np.int32) for c in ("dtype", "shape", "device", "module", "op")},
        "stack": stack[order], "phase": np.zeros(n, np.uint8), "step": np.full(n, -1, np.int32),
    }
    freed_at = t_free[order]
    frees = ~np.isnan(freed_at)
    free_cols = {k: v[frees] for k, v in columns.items()}
    free_cols["t"] = freed_at[frees]
    free_cols["kind"] = np.ones(int(frees.sum()), np.uint8)
    if frame_ids:
        run.apply({"type": "strings", "entries": [["frame", i, text]
                                                  for text, i in frame_ids.items()]})
        run.apply({"type": "stacks", "entries": [[i, list(f)] for f, i in stack_ids.items()]})
    run.apply({"type": "tensor_events", "columns": columns})
    run.apply({"type": "tensor_events", "columns": free_cols})
    live_total = float(columns["nbytes"][~frees].sum()) if n else 0.0
    run.apply({"type": "samples", "columns": {"t": np.array([0.0, max(end, 1e-6)]),
                                              "tracked_total": np.array([live_total] * 2)}})
    return run
