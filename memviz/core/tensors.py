"""Every tracked allocation as one row, indexed by its id (ids are 0, 1, 2, …).

The worker streams alloc / free / retag events; here they become rows with an
allocation time, a free time (NaN while live) and the latest category, which is
all the allocation view, the inspector and the "at a moment" list need.
"""

from __future__ import annotations

import re

import numpy as np

from .categories import CATEGORIES
from .category_history import Retags
from .columns import Columns
from .module_totals import ModuleTotals
from .stream import STRING_TABLES

ALLOC, FREE, RETAG = 0, 1, 2
# the event columns that are ids into the string tables of the same name
NAMED_COLUMNS = ("dtype", "shape", "device", "module", "op")
ROW_COLUMNS = {
    "t_alloc": np.float64, "t_free": np.float64, "nbytes": np.int64, "category": np.int16,
    "offset": np.int64, "dtype": np.int32, "shape": np.int32, "device": np.int32,
    "module": np.int32, "op": np.int32, "phase": np.int16, "step": np.int32,
    "stack": np.int32,
}


class TrackingError(ValueError):
    """Events that contradict each other (ids out of order, unknown categories)."""


# a frame is ``file:line:name`` (a Windows path's drive has no digits after its colon)
_FRAME = re.compile(r"(.*?):(\d+):(.*)", re.DOTALL)
_SHARED_LIBRARY = re.compile(r"\.so(\.\d+)*$|\.dylib$|\.dll$")
_NATIVE_SUFFIXES = (".cpp", ".cc", ".cxx", ".c", ".h", ".hpp", ".cuh", ".cu")


def frame_parts(text: str) -> tuple[str, str, str] | None:
    """(file, line, function) of a frame's text; None if it is not one."""
    found = _FRAME.match(text)
    return None if found is None else (found.group(1), found.group(2), found.group(3))


def is_native_frame(text: str) -> bool:
    """A C++ frame (PyTorch's ``??``, a C or C++ source, a shared library), not Python's."""
    parts = frame_parts(text)
    filename = parts[0] if parts else text
    return filename in ("??", "") or filename.endswith(_NATIVE_SUFFIXES) or \
        _SHARED_LIBRARY.search(filename) is not None


class TensorLog:
    def __init__(self) -> None:
        self.rows = Columns(ROW_COLUMNS, capacity=1024)
        self.strings: dict[str, list[str]] = {t: [] for t in STRING_TABLES}
        self.stacks: dict[int, list[int]] = {}
        self.marks: list[dict] = []
        self.event_count = 0
        self.modules = ModuleTotals()  # per-module figures, kept as events arrive

    def __len__(self) -> int:
        return len(self.rows)

    def add_strings(self, entries: list[list]) -> None:
        for table, ident, text in entries:
            values = self.strings[table]
            if ident == len(values):
                values.append(text)
            elif ident < len(values):
                values[ident] = text
            else:
                raise TrackingError(f"string id {ident} of {table} arrived out of order")

    def add_stacks(self, entries: list[list]) -> None:
        for ident, frames in entries:
            self.stacks[ident] = frames

    def apply(self, cols: dict[str, np.ndarray]) -> Retags | None:
        """Take a batch of events; the retags among them, if any, for the timeline."""
        kind = cols["kind"]
        ids = cols["id"]
        if len(kind) and (cols["category"].max() >= len(CATEGORIES)):
            raise TrackingError("unknown category code")
        self.event_count += len(kind)
        alloc = kind == ALLOC
        if alloc.any():
            self._check_names(cols, alloc)
            new_ids = ids[alloc]
            expected = np.arange(len(self.rows), len(self.rows) + len(new_ids))
            if not np.array_equal(new_ids, expected):
                raise TrackingError("allocation ids must arrive in order without gaps")
            self.rows.append({
                "t_alloc": cols["t"][alloc], "nbytes": cols["nbytes"][alloc],
                "category": cols["category"][alloc], "offset": cols["offset"][alloc],
                **{name: cols[name][alloc] for name in
                   ("dtype", "shape", "device", "module", "op", "phase", "step", "stack")},
            })
        known = ids < len(self.rows)
        if not known.all() or (ids < 0).any():
            raise TrackingError("an event names an allocation that never arrived")
        # each event's category before it: the row's before this batch, or that of the
        # event before it on the same allocation in this batch
        old_category = self.rows.column("category")[ids].copy()
        order = np.argsort(ids, kind="stable")
        same = ids[order][1:] == ids[order][:-1]
        before = old_category[order]
        before[1:][same] = cols["category"][order][:-1][same]
        old_category[order] = before
        retag = kind == RETAG
        retags = None
        if retag.any():
            self.rows.writable("category")[ids[retag]] = cols["category"][retag]
            retags = Retags(self.rows.column("t_alloc")[ids[retag]], cols["t"][retag],
                            self.rows.column("nbytes")[ids[retag]], old_category[retag],
                            cols["category"][retag])
        free = kind == FREE
        if free.any():
            self.rows.writable("t_free")[ids[free]] = cols["t"][free]
        rows = self.rows
        self.modules.apply(kind, rows.column("module")[ids], rows.column("phase")[ids],
                           rows.column("nbytes")[ids], cols["category"], old_category)
        return retags

    def _check_names(self, cols: dict[str, np.ndarray], alloc: np.ndarray) -> None:
        """Every name an allocation refers to arrived before it (-1: none); an id out
        of range would size tables by it (a module id of 2**31: 176 GiB)."""
        for table in NAMED_COLUMNS:
            values = cols[table][alloc]
            low, high = int(values.min()), int(values.max())
            if low < -1 or high >= len(self.strings[table]):
                bad = low if low < -1 else high
                raise TrackingError(f"an allocation names {table} {bad}, which never arrived")

    def string(self, table: str, ident: int) -> str:
        values = self.strings[table]
        return values[ident] if 0 <= ident < len(values) else ""

    def stack_text(self, ident: int, native: bool = False) -> list[str]:
        """A stack's frames, innermost first: Python's only, unless ``native`` (the C++
        frames a snapshot recorded with ``stacks="all"`` puts above them)."""
        frames = [self.string("frame", f) for f in self.stacks.get(ident, [])]
        return frames if native else [f for f in frames if not is_native_frame(f)]

    def live_at(self, t: float) -> np.ndarray:
        """Row indices of the allocations live at time ``t``."""
        t_alloc = self.rows.column("t_alloc")
        t_free = self.rows.column("t_free")
        return np.flatnonzero((t_alloc <= t) & ~(t_free <= t))
