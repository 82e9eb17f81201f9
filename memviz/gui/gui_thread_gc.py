"""Cyclic garbage is collected on the GUI thread only, while a window is open.

The window's process runs Python threads besides Qt's: each session's reader, a
PyTorch snapshot opened in the background, a long run's next span. Python collects
cycles in whichever thread happens to allocate, and a cycle that holds a Qt object
then runs its C++ destructor there. Qt's locks and the GIL, taken in opposite orders
by that thread and the GUI thread, deadlock the process (seen: the GUI thread
deleting a menu while a reading thread's collection ran a Qt destructor).
pyqtgraph's ``GarbageCollector`` turns automatic collection off and collects on a
GUI-thread timer instead; when the last window closes, automatic collection is on
again.
"""

from __future__ import annotations

import gc

from pyqtgraph.util.garbage_collector import GarbageCollector

_holders: set[int] = set()
_collector: GarbageCollector | None = None


def hold(window: int) -> None:
    """Window ``window`` (any key) opened: collection happens on the GUI thread."""
    global _collector
    _holders.add(window)
    if _collector is None:
        _collector = GarbageCollector(interval=1.0)


def release(window: int) -> None:
    """Window ``window`` closed or was deleted (either, or both); the last one gives
    collection back to Python."""
    global _collector
    _holders.discard(window)
    if not _holders and _collector is not None:
        _collector.timer.stop()
        _collector = None
        gc.enable()
        gc.collect()


def on_gui_thread() -> bool:
    """Is collection confined to the GUI thread now?"""
    return _collector is not None and not gc.isenabled()
