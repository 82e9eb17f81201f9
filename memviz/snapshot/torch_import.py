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
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..core.categories import CODE
from ..core.run import Run
from ..core.spec import RunSpec

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


def _category(entry: dict) -> int:
    name = entry.get("category")
    return CODE.get(name, CODE["other"]) if isinstance(name, str) else CODE["other"]


def to_run(data: dict[str, Any], name: str, run_id: int = 0) -> Run:
    """One device's trace (the busiest) and its segments, as a Run."""
    traces = [t for t in data.get("device_traces", []) if isinstance(t, list)]
    device = max(range(len(traces)), key=lambda i: len(traces[i])) if traces else 0
    trace = traces[device] if traces else []
    segments = [s for s in data.get("segments", []) if isinstance(s, dict)
                and s.get("device", device) == device]
    # lay the segments end to end, so offsets stay compact on a sparse address space
    starts, cursor = [], 0
    for seg in sorted(segments, key=lambda s: int(s.get("address", 0))):
        starts.append((int(seg["address"]), int(seg.get("total_size", 0)), cursor))
        cursor += int(seg.get("total_size", 0))
    def offset_of(addr: int) -> int:
        for base, size, at in starts:
            if base <= addr < base + size:
                return at + addr - base
        return cursor + (addr % (1 << 30))

    times = [e.get("time_us") for e in trace if isinstance(e, dict)]
    by_index = not times or any(not isinstance(t, int | float) for t in times)
    t0 = 0 if by_index else min(times)
    rows: list[list] = []  # t_alloc, t_free, nbytes, category, offset, stack
    live: dict[int, int] = {}
    frame_ids: dict[str, int] = {}
    stack_ids: dict[tuple, int] = {}

    def stack_of(entry: dict) -> int:
        frames = entry.get("frames")
        if not isinstance(frames, list) or not frames:
            return -1
        ids = []
        for f in frames:
            if isinstance(f, dict):
                text = f"{f.get('filename', '?')}:{f.get('line', 0)}:{f.get('name', '?')}"
                ids.append(frame_ids.setdefault(text, len(frame_ids)))
        return stack_ids.setdefault(tuple(ids), len(stack_ids)) if ids else -1

    for index, entry in enumerate(trace):
        if not isinstance(entry, dict):
            continue
        t = index * 1e-6 if by_index else (entry["time_us"] - t0) / 1e6
        action, addr = entry.get("action"), int(entry.get("addr", 0))
        if action == "alloc":
            live[addr] = len(rows)
            rows.append([t, np.nan, int(entry.get("size", 0)), _category(entry),
                         offset_of(addr), stack_of(entry)])
        elif action == "free_completed" and addr in live:
            rows[live.pop(addr)][1] = t
    end = rows[-1][0] if rows else 0.0
    seen = {r[4] for r in rows if np.isnan(r[1])}
    existing = []
    for seg in segments:
        for block in seg.get("blocks", []):
            if block.get("state") == "active_allocated":
                off = offset_of(int(block["address"]))
                if off not in seen:
                    existing.append([0.0, np.nan, int(block["size"]), CODE["other"], off,
                                     stack_of(block)])
    rows = existing + rows
    n = len(rows)
    table = np.array(rows, dtype=np.float64).reshape(n, 6) if n else np.zeros((0, 6))
    run = Run(RunSpec(model=name, steps=1), run_id=run_id)
    run.state = "finished"
    run.environment = {"imported": "PyTorch memory snapshot", "device": device}
    run.model = {"name": name, "class": "PyTorch snapshot", "module_tree": []}
    order = np.argsort(table[:, 0], kind="stable")
    table = table[order]
    columns = {
        "t": table[:, 0], "id": np.arange(n), "kind": np.zeros(n, np.uint8),
        "nbytes": table[:, 2].astype(np.int64), "category": table[:, 3].astype(np.uint8),
        "offset": table[:, 4].astype(np.int64),
        **{c: np.full(n, -1, np.int32) for c in ("dtype", "shape", "device", "module", "op")},
        "stack": table[:, 5].astype(np.int32),
        "phase": np.zeros(n, np.uint8), "step": np.full(n, -1, np.int32),
    }
    frees = ~np.isnan(table[:, 1])
    free_cols = {k: v[frees] for k, v in columns.items()}
    free_cols["t"] = table[frees, 1]
    free_cols["kind"] = np.ones(int(frees.sum()), np.uint8)
    if frame_ids:
        run.apply({"type": "strings", "entries": [["frame", i, text]
                                                  for text, i in frame_ids.items()]})
        run.apply({"type": "stacks", "entries": [[i, list(f)] for f, i in stack_ids.items()]})
    run.apply({"type": "tensor_events", "columns": columns})
    run.apply({"type": "tensor_events", "columns": free_cols})
    live_total = float(table[~frees, 2].sum()) if n else 0.0
    run.apply({"type": "samples", "columns": {"t": np.array([0.0, max(end, 1e-6)]),
                                              "tracked_total": np.array([live_total] * 2)}})
    return run
