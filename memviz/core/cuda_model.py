"""What PyTorch's CUDA caching allocator would reserve for a stream of allocations.

A simulation (or a CPU run) knows every storage's size and lifetime; on a GPU the
process is charged the caching allocator's segments, not those bytes. This replays
the allocations in order through a model of that allocator (PyTorch's
``CUDACachingAllocator.cpp``, default settings):

- each request is rounded up to a multiple of 512 bytes (at least 512);
- requests of at most 1 MiB come from the small pool, whose segments are 2 MiB;
  larger ones from the large pool, whose segments are 20 MiB for requests under
  10 MiB, else the request rounded up to a multiple of 2 MiB;
- a request takes the smallest free block of its pool that fits (best fit), which
  is split when what is left is at least 512 bytes (small pool) or more than 1 MiB
  (large pool); a freed block merges with free neighbours of its segment;
- segments are never given back (no ``empty_cache``), as in a training loop.

On top of the reserved bytes the driver charges the CUDA context and what
allocates outside PyTorch (cuBLAS workspaces). Those constants are typical values,
not measured here: marked unverified.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .tensors import TensorLog

MIN_BLOCK = 512
SMALL_SIZE = 1 << 20
SMALL_BUFFER = 2 << 20
LARGE_BUFFER = 20 << 20
MIN_LARGE_ALLOC = 10 << 20
ROUND_LARGE = 2 << 20
# Assumed, not measured on this machine (a CUDA context on a recent driver with lazy
# module loading; cuBLAS's default workspace, :4096:8):
CUDA_CONTEXT_BYTES = 500 << 20
CUBLAS_WORKSPACE_BYTES = 32 << 20


def round_request(nbytes: int) -> int:
    return max(MIN_BLOCK, -(-nbytes // MIN_BLOCK) * MIN_BLOCK)


def segment_size(request: int) -> int:
    if request <= SMALL_SIZE:
        return SMALL_BUFFER
    if request < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return -(-request // ROUND_LARGE) * ROUND_LARGE


@dataclass
class _Block:
    segment: int
    offset: int
    size: int
    free: bool = True
    small: bool = False  # its segment's pool
    prev: _Block | None = None
    next: _Block | None = None

    def key(self) -> tuple[int, int, int]:
        return (self.size, self.segment, self.offset)


class CachingAllocatorModel:
    def __init__(self) -> None:
        self.pools: dict[bool, list[tuple[int, int, int]]] = {True: [], False: []}
        self.blocks: dict[tuple[int, int, int], _Block] = {}
        self.segments = 0
        self.reserved = 0
        self.allocated = 0
        self.peak_reserved = 0
        self.peak_allocated = 0

    def allocate(self, nbytes: int) -> _Block:
        size = round_request(nbytes)
        small = size <= SMALL_SIZE
        pool = self.pools[small]
        i = bisect.bisect_left(pool, (size, -1, -1))
        if i < len(pool):
            block = self.blocks.pop(pool.pop(i))
        else:  # nothing cached fits: a new segment from the driver
            total = segment_size(size)
            block = _Block(self.segments, 0, total, small=small)
            self.segments += 1
            self.reserved += total
            self.peak_reserved = max(self.peak_reserved, self.reserved)
        rest = block.size - size
        if rest >= MIN_BLOCK if small else rest > SMALL_SIZE:
            tail = _Block(block.segment, block.offset + size, rest, True, small, block,
                          block.next)
            if block.next is not None:
                block.next.prev = tail
            block.next, block.size = tail, size
            self._cache(tail, small)
        block.free = False
        self.allocated += block.size
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        return block

    def release(self, block: _Block) -> None:
        small = block.small
        self.allocated -= block.size
        block.free = True
        for neighbour in (block.prev, block.next):
            if neighbour is not None and neighbour.free:
                self._uncache(neighbour, small)
                if neighbour is block.prev:
                    neighbour.size += block.size
                    neighbour.next = block.next
                    if block.next is not None:
                        block.next.prev = neighbour
                    block = neighbour
                else:
                    block.size += neighbour.size
                    block.next = neighbour.next
                    if neighbour.next is not None:
                        neighbour.next.prev = block
        self._cache(block, small)

    def _cache(self, block: _Block, small: bool) -> None:
        key = block.key()
        bisect.insort(self.pools[small], key)
        self.blocks[key] = block

    def _uncache(self, block: _Block, small: bool) -> None:
        key = block.key()
        pool = self.pools[small]
        pool.pop(bisect.bisect_left(pool, key))
        self.blocks.pop(key)

    def largest_free(self) -> int:
        return max((key[0] for pool in self.pools.values() for key in pool[-1:]), default=0)


def replay_through(log: TensorLog,
                   on_allocate: Callable[[int, _Block, int], None] | None = None
                   ) -> CachingAllocatorModel:
    """Every allocation of ``log`` through a fresh model, in time order (at equal
    times, frees first); ``on_allocate(row, block, new_segment_bytes)`` hears of each."""
    rows = log.rows
    n = len(rows)
    t_alloc, t_free = rows.column("t_alloc"), rows.column("t_free")
    nbytes = rows.column("nbytes")
    freed = np.flatnonzero(~np.isnan(t_free))
    times = np.concatenate([t_alloc, t_free[freed]])
    ids = np.concatenate([np.arange(n), freed])
    kinds = np.concatenate([np.ones(n, np.int8), np.zeros(len(freed), np.int8)])
    order = np.lexsort((kinds, times))
    model = CachingAllocatorModel()
    held: dict[int, _Block] = {}
    for index in order.tolist():
        row = int(ids[index])
        if kinds[index]:
            before = model.reserved
            made = held[row] = model.allocate(int(nbytes[row]))
            if on_allocate is not None:
                on_allocate(row, made, model.reserved - before)
        else:
            freed_block = held.pop(row, None)
            if freed_block is not None:
                model.release(freed_block)
    return model


def replay(log: TensorLog) -> dict[str, int | bool]:
    """Every allocation of ``log`` through the model, in time order: the peaks."""
    model = replay_through(log)
    return {"reserved_peak": model.peak_reserved, "allocated_peak": model.peak_allocated,
            "segments": model.segments, "largest_free_block": model.largest_free(),
            "cuda_context_bytes": CUDA_CONTEXT_BYTES,
            "cublas_workspace_bytes": CUBLAS_WORKSPACE_BYTES,
            "process_peak": model.peak_reserved + CUDA_CONTEXT_BYTES + CUBLAS_WORKSPACE_BYTES,
            "unverified": True}


class SimulatedDevice:
    """The model fed allocation by allocation as a simulated CUDA run goes: what
    ``torch.cuda.memory_allocated()``, ``memory_reserved()`` and NVML would read.

    A sample takes the highest allocated figure since the last sample (a peak that
    comes and goes between two samples still shows), as a step takes its own."""

    def __init__(self) -> None:
        self.model = CachingAllocatorModel()
        self._held: dict[int, _Block] = {}
        self._sample_peak = 0
        self._step_peak = 0

    def allocate(self, key: int, nbytes: int) -> None:
        self._held[key] = self.model.allocate(nbytes)
        allocated = self.model.allocated
        if allocated > self._sample_peak:
            self._sample_peak = allocated
        if allocated > self._step_peak:
            self._step_peak = allocated

    def release(self, key: int) -> None:
        block = self._held.pop(key, None)
        if block is not None:
            self.model.release(block)

    def take_sample(self) -> tuple[int, int, int]:
        """(allocated, the highest since the last sample; reserved; the process's
        device memory: reserved + the CUDA context + cuBLAS's workspace, assumed)."""
        peak, self._sample_peak = max(self._sample_peak, self.model.allocated), \
            self.model.allocated
        return peak, self.model.reserved, self.process_bytes()

    def take_step_peak(self) -> int:
        peak, self._step_peak = self._step_peak, self.model.allocated
        return peak

    def process_bytes(self) -> int:
        return self.model.reserved + CUDA_CONTEXT_BYTES + CUBLAS_WORKSPACE_BYTES

    def state(self) -> dict[str, int]:
        """What a real CUDA step reports from the allocator's trace at its end."""
        return {"reserved": self.model.reserved, "segments": self.model.segments,
                "allocated": self.model.allocated,
                "largest_free_block": self.model.largest_free()}
