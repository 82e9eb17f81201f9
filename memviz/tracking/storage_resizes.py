"""Storages resized in place: what FSDP2 (and ZeRO-3, float8 all-gathers) do.

FSDP2 all-gathers a block's parameters into storages it keeps, then frees them with
``untyped_storage().resize_(0)`` and grows them again for the next forward. That
call does not go through the dispatcher, so neither the per-op mode nor a storage's
death sees it. While anything tracks, ``UntypedStorage.resize_`` is wrapped (as
``torch.distributed._tools.mem_tracker`` wraps it): the original runs as it
would, then each tracker listening is told the storage's bytes before and after. A
resize to 0 is a free, a resize up an allocation, for the bytes the storage holds at
each moment. One wrapper serves every tracker of the process (a simulation's ranks
run one after another while rank 0's tracker still lives); it is taken off when the
last one stops listening (unless something wrapped it again meanwhile).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

Listener = Callable[[torch.UntypedStorage, int], None]  # (storage, bytes before)

_lock = threading.Lock()
_listeners: list[Listener] = []
_original: Callable | None = None


def _resize_(storage: torch.UntypedStorage, size: int):
    original = _original
    assert original is not None
    if torch.compiler.is_compiling():  # traced: the graph resizes, not memviz
        return original(storage, size)
    before = storage.nbytes()
    result = original(storage, size)
    for listener in list(_listeners):
        listener(storage, before)
    return result


class StorageResizes:
    """One tracker's place among the listeners, from ``start`` to ``stop``."""

    def __init__(self, resized: Listener) -> None:
        self._resized = resized

    def start(self) -> None:
        global _original
        with _lock:
            if not _listeners:
                _original = torch.UntypedStorage.resize_
                torch.UntypedStorage.resize_ = _resize_  # type: ignore[method-assign]
            _listeners.append(self._resized)

    def stop(self) -> None:
        global _original
        with _lock:
            if self._resized not in _listeners:
                return
            _listeners.remove(self._resized)
            if not _listeners and torch.UntypedStorage.resize_ is _resize_:
                torch.UntypedStorage.resize_ = _original  # type: ignore[method-assign]
                _original = None
            # else: wrapped again by someone else, whose wrapper still calls this one:
            # it passes every call through to the original, telling no one
