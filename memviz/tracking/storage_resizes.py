"""Storages resized in place: what FSDP2 (and ZeRO-3, float8 all-gathers) do.

FSDP2 all-gathers a block's parameters into storages it keeps, then frees them with
``untyped_storage().resize_(0)`` and grows them again for the next forward. That
call does not go through the dispatcher, so neither the per-op mode nor a storage's
death sees it. While tracking, ``UntypedStorage.resize_`` is wrapped (as
``torch.distributed._tools.mem_tracker`` wraps it): the original runs as it
would, then the tracker is told the storage's bytes before and after. A resize to
0 is a free, a resize up an allocation, for the bytes the storage holds at each
moment. The wrapper is taken off when tracking stops (unless something wrapped it
again meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class StorageResizes:
    def __init__(self, resized: Callable[[torch.UntypedStorage, int], None]) -> None:
        self._resized = resized  # (storage, bytes before) after each resize
        self._original: Callable | None = None
        self._wrapper: Callable | None = None

    def start(self) -> None:
        original = torch.UntypedStorage.resize_
        resized = self._resized

        def resize_(storage: torch.UntypedStorage, size: int):
            if torch.compiler.is_compiling():  # traced: the graph resizes, not memviz
                return original(storage, size)
            before = storage.nbytes()
            result = original(storage, size)
            resized(storage, before)
            return result

        self._original, self._wrapper = original, resize_
        torch.UntypedStorage.resize_ = resize_  # type: ignore[method-assign]

    def stop(self) -> None:
        if self._original is not None and torch.UntypedStorage.resize_ is self._wrapper:
            torch.UntypedStorage.resize_ = self._original  # type: ignore[method-assign]
        self._original = self._wrapper = None
