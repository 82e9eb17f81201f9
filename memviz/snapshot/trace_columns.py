"""One device trace of a PyTorch snapshot, taken in entry by entry as it streams:
its allocations in columns, its distinct stacks, and its live bytes over time.

Every value is checked as it is taken: a size or address is a whole number of bytes
(``TorchSnapshotError`` otherwise), frames are shortened, and a stack is read once
however many entries share its frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ..core.categories import CODE
from ..core.text import printable
from .live_timeline import LiveTimeline

FRAME_TEXT_MAX = 300
MAX_FRAMES = 64
MAX_KEPT_LISTS = 1 << 16
OTHER = CODE["other"]


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


class TraceColumns:
    """One device trace's allocations, built entry by entry in columns: when each was
    made and freed (microseconds, and the entry's index for traces without times), its
    size, address, category and stack."""

    NAMES: ClassVar[dict[str, tuple]] = {"t_us": (np.float64, np.nan), "t_index": (np.int64, 0),
        "free_us": (np.float64, np.nan), "free_index": (np.int64, -1),
        "addr": (np.int64, 0), "nbytes": (np.int64, 0),
        "category": (np.uint8, CODE["other"]), "stack": (np.int32, -1)}

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
                code = CODE.get(name, OTHER) if type(name) is str else OTHER
                c["category"][at] = code
                self.timeline.change(t, index, code, nbytes)
                frames = entry.get("frames")
                stack = self.stacks.of(frames)
                c["stack"][at] = stack
                if forget is not None and type(frames) is list:
                    forget(frames, self.stacks.ref(stack))
                self.count += 1
            elif action == "free_completed":
                made = self._live.pop(whole(entry.get("addr", 0), "an address"), None)
                if made is not None:
                    block, at = divmod(made, size)
                    c = self._block_of[block]
                    c["free_us"][at], c["free_index"][at] = t, index
                    self.timeline.change(t, index, int(c["category"][at]),
                                         -int(c["nbytes"][at]))

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


