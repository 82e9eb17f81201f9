"""Starting, watching and stopping a worker from the controller's side (GUI or CLI).

Pure Python: no Qt, no torch. The GUI polls the Run it fills on a timer.

``WorkerSession`` is loaded on first use: ``memviz record`` starts its program from
``program_start`` before it imports anything heavier.
"""

from __future__ import annotations

from typing import Any

__all__ = ["WorkerSession", "worker_command"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import session

        return getattr(session, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
