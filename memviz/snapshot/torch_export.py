"""Export a run as a PyTorch allocator snapshot: what ``python -m torch.cuda._memory_viz``
and pytorch.org/memory_viz read.

The layout is torch's (``segments`` with ``blocks``; ``device_traces`` with
``alloc``, ``free_requested``, ``free_completed`` entries). Every entry and block
has frames: the top one says what memviz knows of it (``module · op``, its phase
and category, the step as the line), then its Python stack where one was
recorded; a backward allocation with no stack of its own gets the stack of the
forward allocation its module made in that step (where the tensor came from).
memviz's own frames are never shown. Addresses come from
the tracker's first-fit layout, so allocations that are live together never
overlap; one segment spans the whole layout and is allocated first. Every entry
carries memviz's category, and its module, op, phase and step in ``user_metadata``
(read back exactly by memviz's import). The web viewer insists that at least one entry is
``"unknown"`` once any has a category, so the segment's entry is. Written as a
pickle (protocol 4: the viewer reads 2 to 4, not 5) of plain containers only, or as
JSON, entry by entry as it is built.
"""

from __future__ import annotations

import itertools
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np

from ..core.categories import CATEGORIES, LABELS
from ..core.run import Run
from .trace_columns import MEMVIZ_METADATA, PHASE_NAMES

PHASES = PHASE_NAMES  # the tracker's phase codes, in order
BASE_ADDRESS = 0x7F00_0000_0000  # any aligned base: the layout's offsets are added to it


# memviz's machinery (its built-in models' own code is the user's model, and kept)
_OWN_FRAMES = tuple(f"{sep}memviz{sep}{part}{sep}" for sep in ("/", "\\") for part in (
    "tracking", "worker", "program", "session", "techniques", "cli"))


def _stack_frames(run: Run, stack_id: int) -> list[dict]:
    frames = []
    for text in run.tensors.stack_text(stack_id, native=True):
        filename, _, rest = text.rpartition(":")
        filename, _, line = filename.rpartition(":")
        if any(part in filename for part in _OWN_FRAMES):
            continue
        frames.append({"filename": filename, "line": int(line) if line.isdigit() else 0,
                       "name": rest})
    return frames


class _Frames:
    """Each allocation's frames, built once per distinct (module, op, phase, category,
    step, stack)."""

    def __init__(self, run: Run, columns: dict[str, np.ndarray]) -> None:
        self.run = run
        self.cols = columns
        self.cache: dict[tuple, list[dict]] = {}
        self.metadata_cache: dict[tuple, str] = {}
        self.stacks: dict[int, list[dict]] = {}  # stack id -> its frames, memviz's left out
        self.forward_stack: dict[tuple[int, int], int] = {}  # (module, step) -> stack
        forward = PHASES.index("forward")
        for i in np.flatnonzero((columns["phase"] == forward) & (columns["stack"] >= 0)):
            key = (int(columns["module"][i]), int(columns["step"][i]))
            if key not in self.forward_stack and self._stack(int(columns["stack"][i])):
                self.forward_stack[key] = int(columns["stack"][i])

    def _stack(self, stack: int) -> list[dict]:
        found = self.stacks.get(stack)
        if found is None:
            found = self.stacks[stack] = _stack_frames(self.run, stack) if stack >= 0 else []
        return found

    def metadata(self, i: int) -> str:
        """memviz's exact facts of allocation ``i`` for its entry's ``user_metadata``
        (what an import reads back: module, op, phase, step and category)."""
        c = self.cols
        key = (int(c["module"][i]), int(c["op"][i]), int(c["phase"][i]), int(c["step"][i]),
               int(c["category"][i]))
        found = self.metadata_cache.get(key)
        if found is None:
            module, op, phase, step, category = key
            log = self.run.tensors
            found = self.metadata_cache[key] = MEMVIZ_METADATA + json.dumps(
                [log.string("module", module), log.string("op", op),
                 PHASES[phase] if 0 <= phase < len(PHASES) else "", step,
                 CATEGORIES[category]], separators=(",", ":"))
        return found

    def __call__(self, i: int) -> list[dict]:
        c = self.cols
        module, op, phase = int(c["module"][i]), int(c["op"][i]), int(c["phase"][i])
        category, step, stack = int(c["category"][i]), int(c["step"][i]), int(c["stack"][i])
        if phase == PHASES.index("backward") and not self._stack(stack):
            # backward runs in autograd's engine: the stack that made it is its forward's
            stack = self.forward_stack.get((module, step), -1)
        key = (module, op, phase, category, step, stack)
        found = self.cache.get(key)
        if found is None:
            log = self.run.tensors
            module_name = log.string("module", module) or "(outside any module)"
            op_name = log.string("op", op).removesuffix(".default") or "(unknown op)"
            where = ", ".join(filter(None, [PHASES[phase] if 0 <= phase < len(PHASES) else "",
                                            LABELS[CATEGORIES[category]]]))
            top = {"filename": module_name, "line": max(step, 0),
                   "name": f"{module_name} · {op_name} [{where}]"}
            found = self.cache[key] = [top, *self._stack(stack)]
        return found


class _Columns:
    """The run's allocations as arrays, read once under its lock."""

    def __init__(self, run: Run) -> None:
        rows = run.tensors.rows
        with run.lock:
            self.count = len(rows)
            self.t_alloc = np.asarray(rows.column("t_alloc"))
            self.t_free = np.asarray(rows.column("t_free"))
            self.nbytes = np.asarray(rows.column("nbytes"), dtype=np.int64)
            self.offset = np.asarray(rows.column("offset"), dtype=np.int64)
            self.category = np.asarray(rows.column("category"))
            self.frames = _Frames(run, {name: np.asarray(rows.column(name)) for name in
                                        ("module", "op", "phase", "category", "step",
                                         "stack")})
        self.extent = int((self.offset + self.nbytes).max()) if self.count else 0


def _trace(c: _Columns) -> Iterator[dict]:
    """The device trace, entry by entry in time order (at equal times frees before
    allocations, and otherwise in the order of the allocations): built as it is
    written, so a run of millions of allocations is never held as dicts at once."""
    yield {"action": "segment_alloc", "addr": BASE_ADDRESS, "size": c.extent, "stream": 0,
           "frames": [], "time_us": 0, "category": "unknown"}
    freed = ~np.isnan(c.t_free)
    # each allocation's alloc, then its free_requested and free_completed if freed
    first = np.concatenate(([0], np.cumsum(1 + 2 * freed[:-1]))) if c.count else \
        np.zeros(0, np.int64)
    index = np.concatenate((np.arange(c.count), np.flatnonzero(freed),
                            np.flatnonzero(freed)))
    action = np.concatenate((np.zeros(c.count, np.int8), np.ones(freed.sum(), np.int8),
                             np.full(freed.sum(), 2, np.int8)))
    times = np.concatenate((c.t_alloc, c.t_free[freed], c.t_free[freed]))
    sequence = np.concatenate((first, first[freed] + 1, first[freed] + 2))
    for k in np.lexsort((sequence, action == 0, times)).tolist():
        i = int(index[k])
        t = float(times[k])
        yield {"action": _ACTIONS[int(action[k])],
               "addr": BASE_ADDRESS + int(c.offset[i]), "size": int(c.nbytes[i]),
               "stream": 0, "frames": c.frames(i),
               "category": CATEGORIES[int(c.category[i])],
               "user_metadata": c.frames.metadata(i), "time_us": int(t * 1e6)}


_ACTIONS = ("alloc", "free_requested", "free_completed")


def _segments(c: _Columns) -> list[dict]:
    """The one segment the layout spans, with a block for each allocation still live
    at the end and the free space between them."""
    if not c.extent:
        return []
    live = np.flatnonzero(np.isnan(c.t_free))
    live = live[np.argsort(c.offset[live])]
    blocks, cursor = [], 0
    for i in live.tolist():
        start = int(c.offset[i])
        if start > cursor:
            blocks.append({"address": BASE_ADDRESS + cursor, "size": start - cursor,
                           "requested_size": 0, "state": "inactive", "frames": []})
        blocks.append({"address": BASE_ADDRESS + start, "size": int(c.nbytes[i]),
                       "requested_size": int(c.nbytes[i]), "state": "active_allocated",
                       "frames": c.frames(int(i))})
        cursor = start + int(c.nbytes[i])
    if cursor < c.extent:
        blocks.append({"address": BASE_ADDRESS + cursor, "size": c.extent - cursor,
                       "requested_size": 0, "state": "inactive", "frames": []})
    allocated = int(c.nbytes[live].sum()) if len(live) else 0
    return [{"device": 0, "address": BASE_ADDRESS, "total_size": c.extent,
             "allocated_size": allocated, "active_size": allocated,
             "requested_size": allocated, "stream": 0, "segment_type": "large",
             "segment_pool_id": (0, 0), "is_expandable": False, "frames": [],
             "blocks": blocks}]


def to_torch_snapshot(run: Run) -> dict[str, Any]:
    """The whole snapshot as one dict (what ``write`` streams instead)."""
    c = _Columns(run)
    return {"segments": _segments(c), "device_traces": [list(_trace(c))],
            "allocator_settings": {}, "external_annotations": []}


# Written a block of entries at a time. Each block is pickled on its own (protocol 2's
# opcodes, plain containers; a frames list shared by the block's entries is written
# once and referred to by the memo); its opcodes after the list it would build append the
# entries to the trace list already on the unpickler's stack. A block refers only to
# memo slots it set itself, so a later block reusing a slot number is harmless.
TRACE_BLOCK = 8_192
_LIST_HEAD = b"\x80\x02]q\x00"  # PROTO 2, EMPTY_LIST, BINPUT 0


def _appends(entries: list[dict]) -> bytes:
    data = pickle.dumps(entries, protocol=2)
    if not data.startswith(_LIST_HEAD) or not data.endswith(b"."):
        raise AssertionError("unexpected pickle layout")  # a Python that pickles otherwise
    return data[len(_LIST_HEAD):-1]


def _write_pickle(c: _Columns, f: BinaryIO) -> None:
    def value(obj: Any) -> bytes:  # a whole object pushed on the stack
        return pickle.dumps(obj, protocol=2)[2:-1]

    # PROTO 4 (the web viewer reads 2 to 4; every opcode below is protocol 2's, which 4
    # includes, and frames are optional), the top dict, MARK for its items
    f.write(b"\x80\x04}(")
    f.write(value("segments") + value(_segments(c)))
    f.write(value("device_traces") + b"](")  # the list of traces, MARK
    f.write(b"]")  # the trace itself, filled block by block
    trace = _trace(c)
    while block := list(itertools.islice(trace, TRACE_BLOCK)):
        f.write(_appends(block))
    f.write(b"e")  # APPENDS: the trace into the list of traces
    f.write(value("allocator_settings") + value({}))
    f.write(value("external_annotations") + value([]))
    f.write(b"u.")  # SETITEMS, STOP


def _write_json(c: _Columns, f: TextIO) -> None:
    segments = [{**s, "segment_pool_id": list(s["segment_pool_id"])} for s in _segments(c)]
    f.write('{"segments": ' + json.dumps(segments) + ', "device_traces": [[')
    trace = _trace(c)
    first = True
    while block := list(itertools.islice(trace, TRACE_BLOCK)):
        f.write(("" if first else ", ") + ", ".join(map(json.dumps, block)))
        first = False
    f.write(']], "allocator_settings": {}, "external_annotations": []}')


def write(run: Run, out: str | Path, kind: str) -> None:
    """The run as a PyTorch snapshot file, written as it is built (bounded memory)."""
    c = _Columns(run)
    out = Path(out)
    if kind == "torch-pickle":
        with open(out, "wb") as f:
            _write_pickle(c, f)
    elif kind == "torch-json":
        with open(out, "w") as f:
            _write_json(c, f)
    else:
        raise ValueError(f"unknown export kind {kind!r}")
