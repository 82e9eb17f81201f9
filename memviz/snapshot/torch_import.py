"""Open a PyTorch memory snapshot (``torch.cuda.memory._dump_snapshot``: pickle, or JSON)
as a Run, so the same views show a GPU cluster's run on a workstation.

Pickles are walked by ``plain_pickle``, which admits no class at all (a snapshot is
plain dicts, lists, strings and numbers; anything else is refused before any of it
runs) and hands each batch of trace entries to ``TraceColumns`` as it is read, so a
multi-GB snapshot opens in memory proportional to its allocations' columns, not to
its Python objects. Trace entries become allocations (their ``category`` where
present, ``other`` for torch's ``unknown``); blocks still active at the end with no
``alloc`` entry existed before recording began and start at time 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..core.categories import CODE
from ..core.run import Run
from ..core.spec import RunSpec
from ..core.text import printable
from .plain_pickle import TRACES_KEY, PlainPickleError, PlainPickleWalker

# JSON is read whole (the standard library has no streaming parser): a cap keeps that
# to a few GB of RAM; PyTorch writes pickles, which have none
MAX_JSON_BYTES = 512 << 20
# An honest snapshot spends tens of bytes on each trace entry or block, even with
# pickle's memo; a file whose entries (memo references to one object, say) outnumber
# one per ENTRY_FLOOR_BYTES lies about itself and is refused as soon as it does.
ENTRY_FLOOR_BYTES = 8
ENTRY_SLACK = 1 << 12
FRAME_TEXT_MAX = 300
MAX_FRAMES = 64
MAX_KEPT_LISTS = 1 << 16
APPLY_CHUNK = 1 << 18


class TorchSnapshotError(ValueError):
    pass


def looks_like_torch_snapshot(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(2)
    return head[:1] == b"\x80" or head.lstrip()[:1] == b"{"


def _whole(value: Any, what: str) -> int:
    """A byte count or address: a whole number from 0 to 2**63 (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
        raise TorchSnapshotError(f"{what} is not a whole number of bytes ({str(value)[:40]})")
    return value


def _microseconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def _frame_text(frame: dict) -> str:
    parts = [frame.get("filename", "?"), frame.get("line", 0), frame.get("name", "?")]
    return printable(":".join(str(p)[:FRAME_TEXT_MAX] for p in parts), one_line=True)


class _StackRef:
    """What the memo keeps of a frames list once its stack has an id."""

    __slots__ = ("id",)

    def __init__(self, stack_id: int) -> None:
        self.id = stack_id


class Stacks:
    """Distinct frames and stacks, each numbered once."""

    def __init__(self) -> None:
        self.frame_ids: dict[str, int] = {}
        self.stack_ids: dict[tuple, int] = {}
        # a snapshot's frames and frames lists are shared objects: each is read once
        # (the object is kept with its id, so the id is not reused)
        self._by_frame: dict[int, tuple[dict, int]] = {}
        self._by_list: dict[int, tuple[list, int]] = {}
        self._refs: dict[int, _StackRef] = {}

    def ref(self, stack_id: int) -> _StackRef:
        """The one marker of ``stack_id`` (what the reader's memo keeps of its lists)."""
        found = self._refs.get(stack_id)
        if found is None:
            found = self._refs[stack_id] = _StackRef(stack_id)
        return found

    def _frame(self, frame: dict) -> int:
        known = self._by_frame.get(id(frame))
        if known is None:
            fid = self.frame_ids.setdefault(_frame_text(frame), len(self.frame_ids))
            known = self._by_frame[id(frame)] = (frame, fid)
        return known[1]

    def of(self, frames: Any) -> int:
        if isinstance(frames, _StackRef):
            return frames.id
        if not isinstance(frames, list) or not frames:
            return -1
        known = self._by_list.get(id(frames))
        if known is not None:
            return known[1]
        ids = tuple(self._frame(f) for f in frames[:MAX_FRAMES] if isinstance(f, dict))
        found = self.stack_ids.setdefault(ids, len(self.stack_ids)) if ids else -1
        if len(self._by_list) >= MAX_KEPT_LISTS:  # lists not shared after all
            self._by_list.clear()
        self._by_list[id(frames)] = (frames, found)
        return found


class _Blocks:
    """A column filled in fixed blocks: no doubling, no copy as it grows."""

    SIZE = 1 << 16

    def __init__(self, dtype, fill) -> None:
        self.dtype, self.fill = dtype, fill
        self.blocks: list[np.ndarray] = []

    def block(self, i: int) -> np.ndarray:
        while len(self.blocks) <= i:
            self.blocks.append(np.full(self.SIZE, self.fill, self.dtype))
        return self.blocks[i]

    def values(self, n: int) -> np.ndarray:
        return np.concatenate(self.blocks)[:n] if self.blocks else np.zeros(0, self.dtype)


class TraceColumns:
    """One device trace's allocations, built entry by entry in columns: when each was
    made and freed (microseconds, and the entry's index for traces without times), its
    size, address, category and stack."""

    NAMES: ClassVar[dict[str, tuple]] = {"t_us": (np.float64, np.nan), "t_index": (np.int64, 0),
        "free_us": (np.float64, np.nan), "free_index": (np.int64, -1),
        "addr": (np.int64, 0), "nbytes": (np.int64, 0),
        "category": (np.uint8, CODE["other"]), "stack": (np.int32, -1)}

    def __init__(self, stacks: Stacks) -> None:
        self.stacks = stacks
        self.cols = {k: _Blocks(*v) for k, v in self.NAMES.items()}
        self._block_of: dict[int, dict[str, np.ndarray]] = {}
        self.count = 0  # allocations
        self.entries = 0  # entries of every kind
        self.t0_us = math.inf
        self.all_timed = True
        self._live: dict[int, int] = {}

    def add(self, entries: list, forget=None) -> None:
        """``forget(obj, replacement)``: tell the reader what its memo may drop."""
        size = _Blocks.SIZE
        for entry in entries:
            index = self.entries
            self.entries += 1
            if type(entry) is not dict:
                continue
            t = _microseconds(entry.get("time_us"))
            if t != t:
                self.all_timed = False
            elif t < self.t0_us:
                self.t0_us = t
            action = entry.get("action")
            if action == "alloc":
                row = self.count
                block, at = divmod(row, size)
                c = self._block_of.get(block) or self._open_block(block)
                addr = _whole(entry.get("addr", 0), "an address")
                self._live[addr] = row
                c["t_us"][at], c["t_index"][at], c["addr"][at] = t, index, addr
                c["nbytes"][at] = _whole(entry.get("size", 0), "a size")
                name = entry.get("category")
                if type(name) is str:
                    c["category"][at] = CODE.get(name, CODE["other"])
                frames = entry.get("frames")
                stack = self.stacks.of(frames)
                c["stack"][at] = stack
                if forget is not None and type(frames) is list:
                    forget(frames, self.stacks.ref(stack))
                self.count += 1
            elif action == "free_completed":
                made = self._live.pop(_whole(entry.get("addr", 0), "an address"), None)
                if made is not None:
                    block, at = divmod(made, size)
                    c = self._block_of[block]
                    c["free_us"][at], c["free_index"][at] = t, index

    def _open_block(self, block: int) -> dict[str, np.ndarray]:
        c = self._block_of[block] = {k: g.block(block) for k, g in self.cols.items()}
        return c

    def take(self, name: str) -> np.ndarray:
        """One column, whole; its blocks are let go (each column is taken once)."""
        values = self.cols[name].values(self.count)
        self.cols[name].blocks = []
        self._block_of.clear()
        return values


class _Reading:
    """The sink of a pickle walk: each device trace's entries into its TraceColumns,
    within the entries the file's size allows."""

    def __init__(self, file_bytes: int) -> None:
        self.stacks = Stacks()
        self.by_trace: dict[int, TraceColumns] = {}
        self.budget = ENTRY_SLACK + file_bytes // ENTRY_FLOOR_BYTES
        self.file_bytes = file_bytes
        self.walker: PlainPickleWalker | None = None
        self.entries = 0

    def columns_for(self, trace: list) -> TraceColumns:
        found = self.by_trace.get(id(trace))
        if found is None:
            found = self.by_trace[id(trace)] = TraceColumns(self.stacks)
        return found

    def __call__(self, trace: list, entries: list) -> None:
        self.entries += len(entries)
        if self.entries > self.budget:
            raise TorchSnapshotError(f"it claims {self.entries:,} entries or more, more "
                                     f"than a {self.file_bytes:,}-byte file can hold")
        self.columns_for(trace).add(entries, self.walker.forget if self.walker else None)


def _read(path: Path, progress=None) -> tuple[dict, _Reading]:
    """The snapshot's top map, its traces' entries already taken into columns."""
    size = path.stat().st_size
    reading = _Reading(size)
    try:
        with open(path, "rb") as f:
            is_pickle = f.read(1) == b"\x80"
        if is_pickle:
            reading.walker = PlainPickleWalker(path, reading, progress)
            data = reading.walker.walk()
            reading.walker = None  # and its memo with it
        else:
            if size > MAX_JSON_BYTES:
                raise TorchSnapshotError(f"a JSON snapshot larger than {MAX_JSON_BYTES >> 20} "
                                         "MiB (PyTorch's own are pickles, which have no limit)")
            data = json.loads(path.read_bytes())
    except PlainPickleError as exc:
        text = str(exc)
        raise TorchSnapshotError(text if text.startswith("refused") or "can hold" in text
                                 else f"not a readable PyTorch snapshot ({text})") from None
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, TorchSnapshotError):
            raise
        raise TorchSnapshotError(f"not a readable PyTorch snapshot ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("segments", []), list) or \
            not isinstance(data.get(TRACES_KEY, []), list):
        raise TorchSnapshotError("not a PyTorch memory snapshot (no segments or "
                                 "device_traces)")
    for trace in data.get(TRACES_KEY, []):
        if not isinstance(trace, list):
            raise TorchSnapshotError("a device trace is not a list")
        if trace:  # not streamed (JSON, or a pickle that built it another way)
            reading(trace, trace[:])
            trace.clear()
    return data, reading


def _segments(data: dict, reading: _Reading) -> list[dict]:
    segments = data.get("segments", [])
    if not all(isinstance(s, dict) for s in segments):
        raise TorchSnapshotError("a segment is not a map")
    for seg in segments:
        blocks = seg.get("blocks", [])
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            raise TorchSnapshotError("a segment's blocks are not a list of maps")
    claimed = reading.entries + len(segments) + sum(len(s.get("blocks", [])) for s in segments)
    if claimed > reading.budget:
        raise TorchSnapshotError(f"it claims {claimed:,} entries, more than a "
                                 f"{reading.file_bytes:,}-byte file can hold")
    return segments


def open_snapshot(path: str | Path, name: str, run_id: int = 0,
                  progress: Callable[[float], None] | None = None) -> Run:
    """The busiest device's trace and its segments, as a Run. ``progress(fraction)``
    as the file is read."""
    data, reading = _read(Path(path), progress)
    segments = _segments(data, reading)
    traces = [reading.by_trace.get(id(t)) or TraceColumns(reading.stacks)
              for t in data.get(TRACES_KEY, [])]
    device = max(range(len(traces)), key=lambda i: traces[i].entries) if traces else 0
    trace = traces[device] if traces else TraceColumns(reading.stacks)
    segments = [s for s in segments if s.get("device", device) == device]
    return _as_run(trace, segments, reading.stacks, name, run_id, device)


class _Layout:
    """Segments laid end to end, so offsets stay compact on a sparse address space."""

    def __init__(self, segments: list[dict]) -> None:
        spans = sorted((_whole(s.get("address", 0), "an address"),
                        _whole(s.get("total_size", 0), "a segment size")) for s in segments)
        self.bases = np.array([b for b, _ in spans], dtype=np.int64)
        self.sizes = np.array([n for _, n in spans], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64) \
            if spans else np.zeros(0, np.int64)
        self.end = int(self.sizes.sum()) if spans else 0

    def offsets(self, addrs: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.bases, addrs, side="right") - 1
        inside = i >= 0
        if len(self.bases):
            j = np.clip(i, 0, None)
            inside &= addrs < self.bases[j] + self.sizes[j]
            within = self.starts[j] + addrs - self.bases[j]
        else:
            within = np.zeros_like(addrs)
        return np.where(inside, within, self.end + addrs % (1 << 30))


def _events(rows: np.ndarray, t: np.ndarray, kind: int, nbytes: np.ndarray,
            category: np.ndarray, offset: np.ndarray, stack: np.ndarray) -> dict:
    """The tensor_events columns of allocations ``rows``: made (kind 0) or freed (1)."""
    n = len(rows)
    return {"t": t[rows], "id": rows, "kind": np.full(n, kind, np.uint8),
            "nbytes": nbytes[rows], "category": category[rows], "offset": offset[rows],
            **{c: np.full(n, -1, np.int32) for c in ("dtype", "shape", "device", "module",
                                                      "op")},
            "stack": stack[rows], "phase": np.zeros(n, np.uint8),
            "step": np.full(n, -1, np.int32)}


def _as_run(trace: TraceColumns, segments: list[dict], stacks: Stacks, name: str,
            run_id: int, device: int) -> Run:
    layout = _Layout(segments)
    n = trace.count
    if trace.all_timed and trace.entries:
        t_alloc = (trace.take("t_us") - trace.t0_us) / 1e6
        t_free = (trace.take("free_us") - trace.t0_us) / 1e6
    else:  # an entry without its time: order by position, a microsecond apart
        t_alloc = trace.take("t_index") * 1e-6
        free_index = trace.take("free_index")
        t_free = np.where(free_index >= 0, free_index * 1e-6, np.nan)
    nbytes, category = trace.take("nbytes"), trace.take("category")
    offset, stack = layout.offsets(trace.take("addr")), trace.take("stack")
    end = float(t_alloc[-1]) if n else 0.0
    # active at the end and never traced: these existed before recording began
    seen = set(offset[np.isnan(t_free)].tolist())
    existing = []
    for block in (b for seg in segments for b in seg.get("blocks", [])
                  if b.get("state") == "active_allocated"):
        at = int(layout.offsets(np.array([_whole(block.get("address", 0), "an address")]))[0])
        if at not in seen:
            existing.append((at, _whole(block.get("size", 0), "a block size"),
                             stacks.of(block.get("frames"))))
    k = len(existing)
    pre = np.array(existing, dtype=np.int64).reshape(k, 3)
    # a trace is in time order already, and then nothing is copied
    order = None if bool((np.diff(t_alloc) >= 0).all()) else np.argsort(t_alloc, kind="stable")

    def arranged(values: np.ndarray, before: np.ndarray) -> np.ndarray:
        values = values if order is None else values[order]
        return values if not k else np.concatenate([before.astype(values.dtype), values])

    t_alloc = arranged(t_alloc, np.zeros(k))
    t_free = arranged(t_free, np.full(k, np.nan))
    nbytes = arranged(nbytes, pre[:, 1])
    category = arranged(category, np.full(k, CODE["other"]))
    offset = arranged(offset, pre[:, 0])
    stack = arranged(stack, pre[:, 2])
    total = n + k
    run = Run(RunSpec(model=printable(name, one_line=True), steps=1), run_id=run_id)
    run.tensors.rows.reserve(total, exact=True)
    run.state = "finished"
    run.environment = {"imported": "PyTorch memory snapshot", "device": device}
    run.model = {"name": run.spec.model, "class": "PyTorch snapshot", "module_tree": []}
    if stacks.frame_ids:
        run.apply({"type": "strings", "entries": [["frame", i, text]
                                                  for text, i in stacks.frame_ids.items()]})
        run.apply({"type": "stacks", "entries": [[i, list(f)]
                                                 for f, i in stacks.stack_ids.items()]})
    frees = ~np.isnan(t_free)
    freed = np.flatnonzero(frees)
    # in chunks: what is built to hand over stays small beside what the run keeps
    for first in range(0, total, APPLY_CHUNK):
        rows = np.arange(first, min(first + APPLY_CHUNK, total))
        run.apply({"type": "tensor_events", "columns": _events(
            rows, t_alloc, 0, nbytes, category, offset, stack)})
    for first in range(0, len(freed), APPLY_CHUNK):
        rows = freed[first:first + APPLY_CHUNK]
        run.apply({"type": "tensor_events", "columns": _events(
            rows, t_free, 1, nbytes, category, offset, stack)})
    live_total = float(nbytes[~frees].sum()) if total else 0.0
    run.apply({"type": "samples", "columns": {"t": np.array([0.0, max(end, 1e-6)]),
                                              "tracked_total": np.array([live_total] * 2)}})
    return run
