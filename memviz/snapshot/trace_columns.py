"""One device trace of a PyTorch snapshot, taken in entry by entry as it streams:
its allocations in columns, its distinct stacks, and its live bytes over time.

Every value is checked as it is taken: a size or address is a whole number of bytes
(``TorchSnapshotError`` otherwise), frames are shortened, and a stack is read once
however many entries share its frames.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np

from ..core.categories import CODE
from ..core.text import printable
from .live_timeline import LiveTimeline

FRAME_TEXT_MAX = 300
MAX_FRAMES = 64
MAX_KEPT_LISTS = 1 << 16
MAX_METADATA = 1 << 12  # distinct user_metadata strings read (each once)
OTHER = CODE["other"]
# what a stack says its allocation was made in (memviz's phase codes)
FORWARD, BACKWARD, OPTIMIZER = 2, 3, 4
# memviz's own export puts its exact facts in each entry's user_metadata, after this
MEMVIZ_METADATA = "memviz:"
MAX_OOMS = 64  # the failed requests kept (the first ones)
SEGMENT_ACTIONS = ("segment_alloc", "segment_free", "segment_map", "segment_unmap")
PHASE_NAMES = ("", "load", "forward", "backward", "optimizer", "generate")


class TorchSnapshotError(ValueError):
    pass


def whole(value: Any, what: str) -> int:
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


def _phase_of(frames: list[dict]) -> int:
    """The phase a stack was in, from its frames (Python's and, with ``stacks="all"``,
    C++'s): an optimizer's step, autograd's backward, a module's forward, or 0."""
    found = 0
    for frame in frames:
        filename, name = str(frame.get("filename", "")), str(frame.get("name", ""))
        if "/optim/" in filename or "_init_group" in name or "Optimizer.step" in name:
            return OPTIMIZER
        if "autograd::Engine" in name or "Backward" in name or "_engine_run_backward" in \
                name or ("/autograd/" in filename and name == "backward"):
            found = BACKWARD
        elif not found and ("/nn/modules/" in filename or name in ("forward", "_call_impl")):
            found = FORWARD
    return found


class Stacks:
    """Distinct frames and stacks, each numbered once, with the phase each stack says
    its allocations were made in."""

    def __init__(self) -> None:
        self.frame_ids: dict[str, int] = {}
        self.stack_ids: dict[tuple, int] = {}
        self.phase: list[int] = []  # by stack id
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
        kept = [f for f in frames[:MAX_FRAMES] if isinstance(f, dict)]
        ids = tuple(self._frame(f) for f in kept)
        found = self.stack_ids.setdefault(ids, len(self.stack_ids)) if ids else -1
        if found == len(self.phase):
            self.phase.append(_phase_of(kept))
        if len(self._by_list) >= MAX_KEPT_LISTS:  # lists not shared after all
            self._by_list.clear()
        self._by_list[id(frames)] = (frames, found)
        return found


class _Blocks:
    """A column filled in fixed blocks: no copy as it grows, but for its first block,
    which starts small (a snapshot may hold many short traces) and doubles to SIZE."""

    SIZE = 1 << 16
    FIRST = 1 << 8

    def __init__(self, dtype: str | np.dtype, fill: float | int) -> None:
        self.dtype, self.fill = dtype, fill
        self.blocks: list[np.ndarray] = []

    def block(self, i: int, at: int = 0) -> np.ndarray:
        """Block ``i``, with room for its row ``at``."""
        if i and self.blocks and len(self.blocks[0]) < self.SIZE:
            self._grow_first(self.SIZE)
        if not self.blocks:
            self.blocks.append(np.full(self.FIRST, self.fill, self.dtype))
        if i == 0 and at >= len(self.blocks[0]):
            self._grow_first(min(self.SIZE, max(2 * len(self.blocks[0]), at + 1)))
        while len(self.blocks) <= i:
            self.blocks.append(np.full(self.SIZE, self.fill, self.dtype))
        return self.blocks[i]

    def _grow_first(self, size: int) -> None:
        grown = np.full(size, self.fill, self.dtype)
        grown[:len(self.blocks[0])] = self.blocks[0]
        self.blocks[0] = grown

    def values(self, n: int) -> np.ndarray:
        return np.concatenate(self.blocks)[:n] if self.blocks else np.zeros(0, self.dtype)


class SegmentEvents:
    """A trace's segment entries, in columns: (action, address, size, microseconds,
    entry index) each, about 33 bytes."""

    def __init__(self) -> None:
        self.action = array("b")
        self.addr, self.size, self.index = array("q"), array("q"), array("q")
        self.t_us = array("d")

    def add(self, action: int, addr: int, size: int, t_us: float, index: int) -> None:
        self.action.append(action)
        self.addr.append(addr)
        self.size.append(size)
        self.t_us.append(t_us)
        self.index.append(index)

    def __len__(self) -> int:
        return len(self.action)

    def __iter__(self) -> Iterator[tuple[str, int, int, float, int]]:
        for i in range(len(self.action)):
            yield (SEGMENT_ACTIONS[self.action[i]], self.addr[i], self.size[i], self.t_us[i],
                   self.index[i])


class TraceColumns:
    """One device trace's allocations, built entry by entry in columns: when each was
    made and freed (microseconds, and the entry's index for traces without times), its
    size, address, category and stack."""

    NAMES: ClassVar[dict[str, tuple]] = {"t_us": (np.float64, np.nan), "t_index": (np.int64, 0),
        "free_us": (np.float64, np.nan), "free_index": (np.int64, -1),
        "addr": (np.int64, 0), "nbytes": (np.int64, 0),
        "category": (np.uint8, CODE["other"]), "stack": (np.int32, -1),
        # 1 where the entry said its category (else it is inferred after the walk)
        "measured": (np.uint8, 0), "module": (np.int32, -1), "op": (np.int32, -1),
        "phase": (np.uint8, 0), "step": (np.int32, -1)}

    def __init__(self, stacks: Stacks, bin_entries: int = 1) -> None:
        self.stacks = stacks
        self.timeline = LiveTimeline(bin_entries)
        self.cols = {k: _Blocks(*v) for k, v in self.NAMES.items()}
        self._block_of: dict[int, dict[str, np.ndarray]] = {}
        self.count = 0  # allocations
        self.entries = 0  # entries of every kind
        self.t0_us = math.inf
        self.all_timed = True
        self._live: dict[int, int] = {}
        self.names: dict[tuple[str, str], int] = {}  # (kind, text) -> id
        # the allocator's own entries: segments reserved and released (in compact
        # columns: a hostile file may hold millions), and the first requests that failed
        self.segment_events = SegmentEvents()
        self.ooms: list[dict[str, Any]] = []
        self._name_counts: dict[str, int] = {}
        self._metadata: dict[str, tuple[int, int, int, int, int]] = {}

    def add(self, entries: list, forget: Callable[[Any, Any], None] | None = None) -> None:
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
                c = self._block_of.get(block)
                if c is None or at >= len(c["addr"]):
                    c = self._open_block(block, at)
                addr = whole(entry.get("addr", 0), "an address")
                self._live[addr] = row
                c["t_us"][at], c["t_index"][at], c["addr"][at] = t, index, addr
                nbytes = c["nbytes"][at] = whole(entry.get("size", 0), "a size")
                name = entry.get("category")
                code = CODE.get(name, -1) if type(name) is str else -1
                c["measured"][at] = code >= 0
                code = OTHER if code < 0 else code
                c["category"][at] = code
                meta = entry.get("user_metadata")
                if type(meta) is str and meta:
                    c["module"][at], c["op"][at], c["phase"][at], c["step"][at], given = \
                        self._read_metadata(meta)
                    if given >= 0 and not c["measured"][at]:
                        code = c["category"][at] = given
                        c["measured"][at] = 1
                self.timeline.change(t, index, code, nbytes)
                frames = entry.get("frames")
                stack = self.stacks.of(frames)
                c["stack"][at] = stack
                if forget is not None and type(frames) is list:
                    forget(frames, self.stacks.ref(stack))
                self.count += 1
            elif action in SEGMENT_ACTIONS:
                self.segment_events.add(SEGMENT_ACTIONS.index(action),
                                        whole(entry.get("addr", 0), "an address"),
                                        whole(entry.get("size", 0), "a segment size"), t, index)
            elif action == "oom" and len(self.ooms) < MAX_OOMS:
                free = entry.get("device_free")
                self.ooms.append({"request_bytes": whole(entry.get("size", 0), "a size"),
                                  "device_free_bytes": whole(free, "free memory")
                                  if free is not None else None, "t_us": t, "index": index})
            elif action == "free_completed":
                made = self._live.pop(whole(entry.get("addr", 0), "an address"), None)
                if made is not None:
                    block, at = divmod(made, size)
                    c = self._block_of[block]
                    c["free_us"][at], c["free_index"][at] = t, index
                    self.timeline.change(t, index, int(c["category"][at]),
                                         -int(c["nbytes"][at]))

    def name_id(self, kind: str, text: str) -> int:
        """The id of a module or op name: numbered from 0 within its kind."""
        key = (kind, printable(text[:FRAME_TEXT_MAX], one_line=True))
        found = self.names.get(key)
        if found is None:
            found = self.names[key] = self._name_counts.get(kind, 0)
            self._name_counts[kind] = found + 1
        return found

    def _read_metadata(self, meta: str) -> tuple[int, int, int, int, int]:
        """(module, op, phase, step, category or -1) of an entry's ``user_metadata``:
        memviz's exact facts where it wrote them, else the user's tag as the module."""
        found = self._metadata.get(meta)
        if found is not None:
            return found
        found = (self.name_id("module", meta), -1, 0, -1, -1)
        if meta.startswith(MEMVIZ_METADATA):
            facts = _memviz_facts(meta[len(MEMVIZ_METADATA):])
            if facts is not None:
                module, op, phase, step, category = facts
                found = (self.name_id("module", module), self.name_id("op", op),
                         PHASE_NAMES.index(phase) if phase in PHASE_NAMES else 0, step,
                         CODE.get(category, -1))
        if len(self._metadata) < MAX_METADATA:
            self._metadata[meta] = found
        return found

    def _open_block(self, block: int, at: int) -> dict[str, np.ndarray]:
        c = self._block_of[block] = {k: g.block(block, at) for k, g in self.cols.items()}
        if block:  # opening a later block may have grown the first one to its full size
            self._block_of[0] = {k: g.blocks[0] for k, g in self.cols.items()}
        return c

    def take(self, name: str) -> np.ndarray:
        """One column, whole; its blocks are let go (each column is taken once)."""
        values = self.cols[name].values(self.count)
        self.cols[name].blocks = []
        self._block_of.clear()
        return values




def _memviz_facts(text: str) -> tuple[str, str, str, int, str] | None:
    """memviz's export metadata: JSON ``[module, op, phase, step, category]``."""
    import json

    try:
        facts = json.loads(text[:4 * FRAME_TEXT_MAX])
    except ValueError:
        return None
    if not isinstance(facts, list) or len(facts) != 5 or not all(
            isinstance(v, str) for v in (facts[0], facts[1], facts[2], facts[4])) or \
            isinstance(facts[3], bool) or not isinstance(facts[3], int) or \
            not -1 <= facts[3] < 1 << 31:
        return None
    return facts[0], facts[1], facts[2], facts[3], facts[4]
