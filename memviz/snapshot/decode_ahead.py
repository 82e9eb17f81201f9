"""Event batches decoded on a thread of their own while the one before is worked on.

Opening a long run is two jobs of about equal weight: inflating each batch's columns
(zlib, which runs without holding the GIL) and replaying or scanning them (numpy on
the caller's thread). One decoding thread, a couple of batches ahead of the caller,
runs the first beside the second. Batches are decoded one at a time in file order,
so an ``EventBudget`` is spent exactly as it would be on one thread, and a batch
that fails to decode raises where the caller takes it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Row = TypeVar("Row")
Decoded = TypeVar("Decoded")

AHEAD = 2  # batches decoded before the caller asks for them


def decoded_ahead(rows: Iterable[Row], decode: Callable[[Row], Decoded]
                  ) -> Iterator[tuple[Row, Decoded]]:
    """Each row with its decoded batch, in order. The rows are read on the caller's
    thread (a SQLite cursor stays on the thread that made it)."""
    with ThreadPoolExecutor(1, thread_name_prefix="memviz-decode") as pool:
        pending: deque[tuple[Row, Future]] = deque()
        for row in rows:
            pending.append((row, pool.submit(decode, row)))
            if len(pending) > AHEAD:
                taken, future = pending.popleft()
                yield taken, future.result()
        while pending:
            taken, future = pending.popleft()
            yield taken, future.result()
