"""The caching allocator's segments over a run: which segment and offset each
allocation took, when each segment was reserved, and what that leaves free.

A CUDA job can run out of memory with gigabytes "free": they are cached in pieces,
none as large as the request. PyTorch's memory_viz shows it with its segment
timeline; this is the same history, from two sources:

- a simulated (or any tracked) run: its allocations replayed through the model of
  the allocator (``cuda_model``), which says where each block went;
- a PyTorch snapshot: the segments and blocks the device reported, placed by their
  addresses (``measured``).

At any moment a segment's free space is either a whole free segment (cached: the
allocator could give it back to the driver) or gaps between live blocks (inactive
splits: fragmentation). An OOM, real or predicted against a device size, is told
from the same state: the request, the largest free block, and whether a setting of
``PYTORCH_CUDA_ALLOC_CONF`` would have made it fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .analysis import moment
from .categories import CATEGORIES
from .cuda_model import (
    CUBLAS_WORKSPACE_BYTES,
    CUDA_CONTEXT_BYTES,
    replay_through,
    round_request,
    segment_size,
)
from .run import Run
from .tensors import TensorLog

TOP_MODULES = 8


@dataclass
class SegmentHistory:
    """Segments (one entry each) and, per allocation row, where its block lay."""

    source: str  # "simulated" (the allocator model) or "measured" (a device's snapshot)
    seg_size: np.ndarray  # bytes
    seg_made: np.ndarray  # seconds (0: before the run or the trace began)
    seg_freed: np.ndarray  # seconds (inf: held to the end)
    seg_small: np.ndarray  # bool: the small pool's (blocks of at most 1 MiB)
    block_segment: np.ndarray  # per allocation row: its segment (-1: in none known)
    block_offset: np.ndarray  # its offset in that segment
    block_size: np.ndarray  # the block's bytes (the request rounded, as the allocator does)
    t_alloc: np.ndarray
    t_free: np.ndarray  # NaN: live to the end
    category: np.ndarray
    ooms: list[dict[str, Any]] = field(default_factory=list)  # a snapshot's oom entries

    @property
    def segments(self) -> int:
        return len(self.seg_size)

    def reserved_at(self, times: np.ndarray) -> np.ndarray:
        """The bytes of segments held at each of ``times`` (a segment made at t counts
        from t; one released at t no longer does)."""
        released = np.isfinite(self.seg_freed)
        when = np.concatenate([self.seg_made, self.seg_freed[released]])
        change = np.concatenate([self.seg_size, -self.seg_size[released]])
        order = np.lexsort((-change, when))  # at one moment, what is made comes first
        when, running = when[order], np.cumsum(change[order])
        at = np.searchsorted(when, times, side="right") - 1
        return np.where(at >= 0, running[np.clip(at, 0, None)], 0).astype(np.float64)

    def live_rows(self, t: float) -> np.ndarray:
        return np.flatnonzero((self.t_alloc <= t) & ~(self.t_free <= t)
                              & (self.block_segment >= 0))

    def state_at(self, t: float) -> SegmentState:
        held = np.flatnonzero((self.seg_made <= t) & (self.seg_freed > t))
        rows = self.live_rows(t)
        rows = rows[np.isin(self.block_segment[rows], held)]
        return SegmentState(t, self, held, rows)

    def over_time(self, points: int = 400) -> dict[str, np.ndarray]:
        """Reserved, allocated and the largest free block at ``points`` moments, each
        the moment just after an allocation (where the figures change most)."""
        if not len(self.t_alloc):
            return {"t": np.zeros(0), "reserved": np.zeros(0), "allocated": np.zeros(0),
                    "largest_free": np.zeros(0)}
        order = np.argsort(self.t_alloc, kind="stable")
        chosen = order[np.unique(np.linspace(0, len(order) - 1, min(points, len(order)))
                                 .astype(np.int64))]
        times = np.unique(self.t_alloc[chosen])
        states = [self.state_at(float(t)) for t in times]
        return {"t": times, "reserved": np.array([s.reserved for s in states], np.float64),
                "allocated": np.array([s.allocated for s in states], np.float64),
                "largest_free": np.array([s.largest_free for s in states], np.float64)}


@dataclass
class SegmentState:
    """The segments held at one moment and the blocks live in them."""

    t: float
    history: SegmentHistory
    held: np.ndarray  # segment indices
    rows: np.ndarray  # live allocation rows inside them

    @property
    def reserved(self) -> int:
        return int(self.history.seg_size[self.held].sum())

    @property
    def allocated(self) -> int:
        return int(self.history.block_size[self.rows].sum())

    def blocks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The live blocks in address order: (segment, offset, size, row) columns."""
        h = self.history
        rows = self.rows[np.lexsort((h.block_offset[self.rows], h.block_segment[self.rows]))]
        return h.block_segment[rows], h.block_offset[rows], h.block_size[rows], rows

    def blocks_by_segment(self) -> dict[int, list[tuple[int, int, int]]]:
        """Each held segment's live blocks, (offset, size, row), in address order."""
        out: dict[int, list[tuple[int, int, int]]] = {int(s): [] for s in self.held}
        for seg, offset, size, row in zip(*(c.tolist() for c in self.blocks()), strict=True):
            out[seg].append((offset, size, row))
        return out

    def free(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every free block, as columns (segment, offset, size, whole): ``whole`` where
        the segment holds nothing (cached, releasable), else an inactive split."""
        seg, offset, size, _ = self.blocks()
        seg_size = self.history.seg_size
        end = offset + size
        first = np.ones(len(seg), bool)
        first[1:] = seg[1:] != seg[:-1]
        last = np.ones(len(seg), bool)
        last[:-1] = seg[1:] != seg[:-1]
        start = np.where(first, 0, np.concatenate([[0], end[:-1]]))  # after the block before
        before = offset - start
        after = seg_size[seg] - end
        empty = np.setdiff1d(self.held, seg)
        segments = np.concatenate([seg[before > 0], seg[last & (after > 0)], empty])
        offsets = np.concatenate([start[before > 0], end[last & (after > 0)],
                                  np.zeros(len(empty), np.int64)])
        sizes = np.concatenate([before[before > 0], after[last & (after > 0)],
                                seg_size[empty]])
        whole = np.concatenate([np.zeros(len(segments) - len(empty), bool),
                                np.ones(len(empty), bool)])
        return segments, offsets, sizes, whole

    def free_blocks(self) -> list[tuple[int, int, int, bool]]:
        return list(zip(*(c.tolist() for c in self.free()), strict=True))

    @property
    def largest_free(self) -> int:
        sizes = self.free()[2]
        return int(sizes.max()) if len(sizes) else 0

    def free_bytes(self) -> tuple[int, int]:
        """(bytes in wholly free segments, bytes in inactive splits)."""
        _, _, sizes, whole = self.free()
        return int(sizes[whole].sum()), int(sizes[~whole].sum())

    def by_category(self) -> dict[str, int]:
        h = self.history
        out = {c: 0 for c in CATEGORIES}
        for code, nbytes in zip(h.category[self.rows].tolist(),
                                h.block_size[self.rows].tolist(), strict=True):
            out[CATEGORIES[code]] += nbytes
        return {c: b for c, b in out.items() if b}


def history_of(run: Run) -> SegmentHistory | None:
    """The run's segments: a snapshot's as the device reported them, a simulated CUDA
    run's from the allocator's model (worked out once its allocations are all in)."""
    if run.device_segments is not None:
        return run.device_segments
    if not (run.spec.simulate and run.spec.device.startswith("cuda")) or \
            not len(run.tensors) or not run.finished:
        return None
    with run.lock:
        run.device_segments = simulated_history(run.tensors)
    return run.device_segments


def simulated_history(log: TensorLog) -> SegmentHistory:
    """A run's allocations, in time order, through the allocator's model (as
    ``cuda_model.replay``), keeping where each block went and when each segment came."""
    rows = log.rows
    n = len(rows)
    seg_made: list[float] = []
    seg_size: list[int] = []
    seg_small: list[bool] = []
    block_segment = np.full(n, -1, np.int64)
    block_offset = np.zeros(n, np.int64)
    block_size = np.zeros(n, np.int64)
    t_alloc, t_free = rows.column("t_alloc").copy(), rows.column("t_free").copy()

    def placed(row: int, block: Any, new_segment: int) -> None:
        if new_segment:  # a segment from the driver, for this request
            seg_made.append(float(t_alloc[row]))
            seg_size.append(new_segment)
            seg_small.append(block.small)
        block_segment[row], block_offset[row], block_size[row] = (
            block.segment, block.offset, block.size)

    replay_through(log, placed)
    return SegmentHistory("simulated", np.array(seg_size, np.int64),
                          np.array(seg_made, np.float64), np.full(len(seg_size), np.inf),
                          np.array(seg_small, bool), block_segment, block_offset,
                          block_size, t_alloc, t_free, rows.column("category").copy())


def explain_oom(history: SegmentHistory, log: TensorLog, t: float, request: int,
                device_free: int | None = None, predicted: bool = False) -> dict[str, Any]:
    """Why a request of ``request`` bytes failed at ``t`` (or would fail): what was live
    by category and module, the largest free block against the request, and the
    allocator setting that would have helped, if one would."""
    state = history.state_at(t)
    whole, split = state.free_bytes()
    largest = state.largest_free
    rounded = round_request(request)
    at = moment(log, t)
    device_free = device_free or 0
    free_total = whole + split + device_free
    needed = segment_size(rounded)  # what a new segment for it takes from the device
    if rounded <= largest:
        advice = ("a cached free block was large enough: the failure came from outside "
                  "this allocator (another process or library took the device's memory)")
        setting = None
    elif whole + device_free >= needed:
        advice = (f"the allocator frees its {_mib(whole)} of wholly free segments and "
                  f"retries before it fails, which leaves room for the {_mib(needed)} "
                  "segment this needs: memory outside PyTorch took the rest")
        setting = None
    elif free_total >= rounded:
        advice = (f"{_mib(whole + split + device_free)} were free ({_mib(split)} between "
                  f"live blocks, {_mib(whole)} in free segments, {_mib(device_free)} on "
                  f"the device), but no piece of {_mib(rounded)}: with expandable segments "
                  "the allocator maps more memory onto one segment instead of needing a "
                  "free block that large")
        setting = "expandable_segments:True"
    else:
        advice = (f"{_mib(rounded - free_total)} more than the device had free, cached "
                  "or not: no allocator setting makes this fit; fewer bytes must be live "
                  "(the categories below say which)")
        setting = None
    return {"t": t, "source": "predicted" if predicted else history.source,
            "request_bytes": int(request), "largest_free_block": int(largest),
            "cached_free_bytes": int(whole + split), "inactive_split_bytes": int(split),
            "device_free_bytes": int(device_free), "reserved_bytes": state.reserved,
            "allocated_bytes": state.allocated, "by_category": at.by_category,
            "by_module": at.by_module[:TOP_MODULES], "setting": setting, "advice": advice}


def predict_oom(history: SegmentHistory, log: TensorLog, capacity: int,
                outside: int = CUDA_CONTEXT_BYTES + CUBLAS_WORKSPACE_BYTES
                ) -> dict[str, Any] | None:
    """The first allocation that would not fit a device of ``capacity`` bytes (the CUDA
    context and cuBLAS workspace take ``outside`` of it), explained; None if all fit."""
    room = capacity - outside
    if not len(history.seg_size):
        return None
    reserved = np.cumsum(history.seg_size)
    over = np.flatnonzero(reserved > room)
    if not len(over):
        return None
    segment = int(over[0])
    rows = np.flatnonzero(history.block_segment == segment)
    if not len(rows):
        return None
    row = int(rows[np.argmin(history.t_alloc[rows])])
    t = float(history.t_alloc[row])
    before = float(np.nextafter(t, -np.inf))  # the state the request met
    free_device = room - int(reserved[segment - 1]) if segment else room
    return explain_oom(history, log, before, int(log.rows.column("nbytes")[row]),
                       max(free_device, 0), predicted=True)


def _mib(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):,.1f} MiB"
