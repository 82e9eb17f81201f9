"""Allocator truth on CUDA: the caching allocator's own snapshot, joined to categories.

``torch.cuda.memory._record_memory_history`` (bounded by ``max_entries``) keeps
the allocator's segments and blocks; at each step end the runner takes a
snapshot and this module turns it into what the timeline needs: bytes reserved
(segments) against allocated (active blocks), the largest free block (how
fragmented the cache is), and the active blocks per category, by matching each
block's address to the storage the tracker saw. What the allocator holds that
the tracker never saw (cuBLAS workspaces, say) stays ``other``.

The snapshot layout is PyTorch's (``segments`` → ``blocks`` with ``address``,
``size`` and ``state``), the same one ``torch.cuda._memory_viz`` reads.
"""

from __future__ import annotations

from typing import Any

from ..core.categories import CATEGORIES, CODE

HISTORY_ENTRIES = 100_000
BLOCK_ROUND = 512  # the caching allocator rounds every block to this many bytes


def start_history(max_entries: int = HISTORY_ENTRIES) -> None:
    import torch

    torch.cuda.memory._record_memory_history(max_entries=max_entries)


def take_snapshot() -> dict[str, Any]:
    import torch

    return torch.cuda.memory._snapshot()


def rounded(nbytes: int) -> int:
    """The block size the caching allocator gives a storage of ``nbytes``."""
    return max(BLOCK_ROUND, -(-nbytes // BLOCK_ROUND) * BLOCK_ROUND)


def segment_summary(snapshot: dict[str, Any], category_of: dict[int, int],
                    device: int | None = None) -> dict[str, Any]:
    """Reserved, allocated, fragmentation and per-category bytes from a snapshot."""
    reserved = allocated = largest_free = segments = 0
    by_category = [0] * len(CATEGORIES)
    for segment in snapshot.get("segments", []):
        if device is not None and segment.get("device") != device:
            continue
        segments += 1
        reserved += int(segment["total_size"])
        for block in segment.get("blocks", []):
            size = int(block["size"])
            if block["state"] == "active_allocated":
                allocated += size
                code = category_of.get(int(block["address"]), CODE["other"])
                by_category[code] += size
            elif block["state"] == "inactive":
                largest_free = max(largest_free, size)
    return {
        "reserved": reserved,
        "allocated": allocated,
        "segments": segments,
        "largest_free_block": largest_free,
        "by_category": dict(zip(CATEGORIES, by_category, strict=True)),
    }
