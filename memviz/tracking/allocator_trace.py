"""On CUDA the caching allocator is the source of allocations: no per-op Python.

The per-op dispatch mode costs tens of microseconds an op, which on a GPU step of
thousands of ~10 µs kernels makes the step CPU-bound. On CUDA this tracker never
enters it. Instead PyTorch's allocator records its own trace
(``torch.cuda.memory._record_memory_history``: every block allocated and freed,
every segment reserved and released, with C++-side timestamps; Python stacks only
at ``tensors+stacks``), and the tracker reads the entries recorded since its last
read at each phase edge (the history is cleared after each read, so a read costs
what the phase allocated, not the run). The cheap signals still run (saved-tensor
hooks, gradient hooks, the optimizer's state, the model's parameters) and give
categories and modules by address: each tags the block at its storage's data
pointer, and a block no signal names stays a temporary (``other`` outside a
phase). The entries become the tracker's usual records, in time order, so totals,
peaks, categories, the event stream and the file are those of the CPU tracker.

Segments come from the same trace (``segment_alloc`` and ``segment_free``): bytes
reserved, segment count and the largest free gap inside them, without a full
snapshot per step. PyTorch has no call that returns the trace alone: each read
takes ``torch.cuda.memory._snapshot()`` and uses only its new trace entries.

The entry format is PyTorch's ``TraceEntry`` (``action``, ``addr``, ``size``,
``stream``, ``time_us``, ``frames``), the one ``torch.cuda._memory_viz`` reads. A
block's free is its ``free_completed`` (when the allocator can reuse it, which is
when ``memory_allocated()`` drops). ``time_us`` is the wall clock in
microseconds; it is placed on the run's clock by the offset between the two
measured at start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from ..core.categories import CODE
from ..protocol.messages import EVENT_COLUMNS
from .tracker import (
    ALLOC,
    CATEGORY,
    DATA_PTR,
    FREE,
    NBYTES,
    PHASE_CODE,
    RETAG,
    TensorTracker,
)

HISTORY_ENTRIES = 1_000_000  # a bound on the trace between two reads
BLOCK_ROUND = 512  # the caching allocator rounds every block to this many bytes
_IN_PHASE = {PHASE_CODE[p] for p in ("forward", "backward", "optimizer", "generate")}
_MODULE, _SHAPE = EVENT_COLUMNS.index("module"), EVENT_COLUMNS.index("shape")


def rounded(nbytes: int) -> int:
    """The block size the caching allocator gives a storage of ``nbytes``."""
    return max(BLOCK_ROUND, -(-nbytes // BLOCK_ROUND) * BLOCK_ROUND)


class CudaHistory:
    """PyTorch's allocator trace on one device, read a slice at a time."""

    def __init__(self, device_index: int, stacks: bool) -> None:
        self.device_index = device_index
        self.options = {"context": "alloc" if stacks else None,
                        "stacks": "python", "max_entries": HISTORY_ENTRIES}

    def start(self) -> None:
        import torch

        torch.cuda.memory._record_memory_history("all", clear_history=True, **self.options)

    def take(self) -> list[dict[str, Any]]:
        """The entries recorded since the last take (the history is cleared after)."""
        import torch

        snapshot = torch.cuda.memory._snapshot(self.device_index)
        traces = snapshot.get("device_traces") or []
        entries = traces[self.device_index] if self.device_index < len(traces) else []
        torch.cuda.memory._record_memory_history("all", clear_history=True, **self.options)
        return entries

    def stop(self) -> None:
        import torch

        torch.cuda.memory._record_memory_history(None)


class AllocatorTracker(TensorTracker):
    """The tensor tracker fed by the allocator's trace (see the module's docstring).

    ``read_trace`` returns the trace entries since its last call (``CudaHistory.take``
    on a GPU; recorded entries in tests); ``wall_offset`` is wall clock minus the
    tracker's clock (``time.time() - clock()`` at start), which places ``time_us``.
    """

    def __init__(self, clock, t0: float, read_trace: Callable[[], list[dict]], *,
                 device: str = "cuda:0", stacks: bool = False,
                 wall_offset: float | None = None) -> None:
        super().__init__(clock, t0, stacks=stacks)
        self.read_trace = read_trace
        self.device = device
        self.wall_offset = time.time() - clock() if wall_offset is None else wall_offset
        self._blocks: dict[int, list] = {}  # address -> the live block's entry
        self._segments: dict[int, int] = {}  # address -> bytes reserved
        self._tags: list[tuple] = []  # what the cheap signals said, since the last read
        self._unread: dict[int, list] = {}
        self._phases: list[tuple[float, int, int]] = [(float("-inf"), 0, -1)]
        self._allocator_op = self.strings.id("op", "(allocator)")
        self._frame_stacks: dict[tuple, int] = {}
        self.last_oom: dict[str, Any] | None = None
        self.detailed = True  # every block of every step is in the trace

    # -- no per-op Python: the dispatch mode is never entered ------------------------
    def set_detail(self, detailed: bool) -> None:
        self.detailed = True

    def set_phase(self, name: str, step: int) -> None:
        """A phase edge: the trace so far is read (on the training thread), then the
        new phase is noted with its time, for the allocations the next read finds."""
        self.pull()
        super().set_phase(name, step)
        self._phases.append((self.clock(), self.phase, self.step))
        if len(self._phases) > 64:
            del self._phases[1:-32]

    def stop(self) -> None:
        self.pull()
        super().stop()

    # -- the cheap signals name blocks by address ---------------------------------------
    def _register(self, t, st, key: int, nbytes: int, category: int, op: int,
                  module: str | None = None) -> None:
        if t.device.type != "cuda":
            return  # this tracker counts the device's memory
        if module is None:
            module = self.scope.current() if self.scope else ""
        entry = [-1, nbytes, category, None, st.data_ptr(), -1, category, ""]
        self._live[key] = entry
        self.tag_block(entry[DATA_PTR], nbytes, category, module, t.dtype, t.shape)

    def _set_category(self, entry: list, category: int) -> None:
        if entry[CATEGORY] != category:
            entry[CATEGORY] = category
            self.tag_block(entry[DATA_PTR], entry[NBYTES], category, None, None, None)

    def _freed(self, key: int) -> None:
        self._live.pop(key, None)  # the trace says when the block is free

    def tag_block(self, address: int, nbytes: int, category: int, module: str | None,
                  dtype, shape) -> None:
        """A signal named the block at ``address`` (a storage of ``nbytes``)."""
        self._tags.append((self.clock(), address, nbytes, category, module, dtype, shape))

    # -- reading the trace ----------------------------------------------------------------
    def pull(self) -> None:
        """Read the trace since the last pull and log it with the signals, in time order."""
        entries = self.read_trace()
        with self.lock:
            tags, self._tags = self._tags, []
            self._log_in_order(entries, tags)
            self._work_through_log()

    def _log_in_order(self, entries: Iterable[dict], tags: list[tuple]) -> None:
        self._unread = {}  # address -> its allocation's record, while not yet a row
        timed = []
        for entry in entries:
            when = entry.get("time_us")
            t = when / 1e6 - self.wall_offset if isinstance(when, int | float) else self.clock()
            timed.append((t, 0, entry))
        timed += [(tag[0], 1, tag) for tag in tags]
        timed.sort(key=lambda x: (x[0], x[1]))  # at one moment: the block before its tag
        for t, is_tag, item in timed:
            if is_tag:
                self._apply_tag(t, *item[1:])
            else:
                self._apply_entry(t, item)

    def _phase_at(self, t: float) -> tuple[int, int]:
        for when, phase, step in reversed(self._phases):
            if when <= t:
                return phase, step
        return 0, -1

    def _apply_entry(self, t: float, entry: dict) -> None:
        action = entry.get("action")
        address, size = entry.get("addr"), entry.get("size")
        if action == "alloc" and isinstance(address, int) and isinstance(size, int):
            phase, step = self._phase_at(t)
            category = CODE["temporary"] if phase in _IN_PHASE else CODE["other"]
            block = [next(self._ids), size, category, None, address, -1, category, ""]
            self._blocks[address] = block
            # a list, not a tuple: a signal later in this read may name what it holds
            record = [ALLOC, block, t, category, "bytes", self.device, (size,), "",
                      self._allocator_op, phase, step, self._frames_id(entry.get("frames"))]
            self._log.append(record)
            self._unread[address] = record
        elif action == "free_completed" and isinstance(address, int):
            block = self._blocks.pop(address, None)
            if block is not None:
                phase, step = self._phase_at(t)
                self._log.append((FREE, block, t, phase, step))
        elif action == "segment_alloc" and isinstance(address, int) and isinstance(size, int):
            self._segments[address] = size
        elif action == "segment_free" and isinstance(address, int):
            self._segments.pop(address, None)
        elif action == "oom":
            self.last_oom = {"t": t - self.t0, "request_bytes": size,
                             "device_free": entry.get("device_free")}

    def _apply_tag(self, t: float, address: int, nbytes: int, category: int,
                   module: str | None, dtype, shape) -> None:
        block = self._blocks.get(address)
        phase, step = self._phase_at(t)
        if block is None:  # made before the trace began (the model's weights): found now
            block = [next(self._ids), rounded(nbytes), category, None, address, -1,
                     category, ""]
            self._blocks[address] = block
            self._log.append((ALLOC, block, t, category, dtype or "bytes", self.device,
                              shape if shape is not None else (nbytes,), module or "",
                              self._existing_op, phase, step, -1))
            return
        if block[CATEGORY] != category:
            block[CATEGORY] = category
            self._log.append((RETAG, block, t, category, phase, step))
        record = self._unread.get(address)
        if record is not None and record[1] is block:  # the signal names what the block holds
            if module:
                record[7] = module
            if dtype is not None:
                record[4], record[6] = dtype, tuple(shape)
            return
        row = self._pending_row.get(block[0])
        if row is not None:  # a row not sent yet
            if module:
                row[_MODULE] = self._module_id(module)
            if shape is not None:
                row[_SHAPE] = self._shape_id(tuple(shape))

    def _frames_id(self, frames) -> int:
        """A trace entry's Python frames as a stack id (-1 without stacks)."""
        if not self.stacks or not isinstance(frames, list) or not frames:
            return -1
        key = tuple((f.get("filename"), f.get("line"), f.get("name")) for f in frames
                    if isinstance(f, dict))
        found = self._frame_stacks.get(key)
        if found is None:
            ids = [self.strings.id("frame", f"{file}:{line}:{name}") for file, line, name in key]
            found = self._frame_stacks[key] = next(self._stack_numbers)
            self.new_stacks.append([found, ids])
        return found

    # -- the allocator's state, from the trace ---------------------------------------------
    def segment_summary(self) -> dict[str, Any]:
        """Reserved bytes, segments, allocated bytes by category and the largest free
        gap inside a segment, at the last pull."""
        with self.lock:
            self._work_through_log()
            starts = sorted(self._segments)
            blocks = sorted((a, b[NBYTES]) for a, b in self._blocks.items())
            largest_free, i = 0, 0
            for start in starts:
                end = start + self._segments[start]
                while i < len(blocks) and blocks[i][0] < start:
                    i += 1
                cursor = start
                while i < len(blocks) and blocks[i][0] < end:
                    largest_free = max(largest_free, blocks[i][0] - cursor)
                    cursor = max(cursor, blocks[i][0] + blocks[i][1])
                    i += 1
                largest_free = max(largest_free, end - cursor)
            return {"reserved": sum(self._segments.values()), "segments": len(starts),
                    "allocated": self._total, "largest_free_block": largest_free,
                    "by_category": self.live_bytes()}
