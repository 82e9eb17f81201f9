"""Where each allocation sits in the allocation view: first fit into freed holes.

Each allocation gets an offset placed into the holes that frees leave, as an
allocator would, so bands never overlap and the picture stays as compact as the
live bytes allow. (Placing each one on top of the highest live allocation
instead let long-lived gradients and optimizer state push the top to 6× the live
bytes within two steps.)
"""

from __future__ import annotations

import bisect


class FirstFitLayout:
    def __init__(self) -> None:
        self._hole_starts: list[int] = []  # free gaps below the extent, sorted by start
        self._hole_sizes: list[int] = []
        self.extent = 0  # the layout's top

    def place(self, nbytes: int) -> int:
        """The lowest hole that is large enough, else the top."""
        starts, sizes = self._hole_starts, self._hole_sizes
        for i, size in enumerate(sizes):
            if size >= nbytes:
                offset = starts[i]
                if size == nbytes:
                    del starts[i], sizes[i]
                else:
                    starts[i] += nbytes
                    sizes[i] -= nbytes
                return offset
        offset = self.extent
        self.extent += nbytes
        return offset

    def release(self, offset: int, nbytes: int) -> None:
        """Give [offset, offset + nbytes) back, merging with neighbouring holes."""
        starts, sizes = self._hole_starts, self._hole_sizes
        i = bisect.bisect_left(starts, offset)
        if i > 0 and starts[i - 1] + sizes[i - 1] == offset:  # merge with the hole below
            i -= 1
            offset = starts[i]
            nbytes += sizes[i]
            del starts[i], sizes[i]
        if i < len(starts) and offset + nbytes == starts[i]:  # and the one above
            nbytes += sizes[i]
            del starts[i], sizes[i]
        if offset + nbytes == self.extent:
            self.extent = offset
        else:
            starts.insert(i, offset)
            sizes.insert(i, nbytes)
