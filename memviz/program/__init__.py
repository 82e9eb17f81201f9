"""Profiling a user's own program: ``memviz.track()``, ``memviz record``, callbacks.

Worker side: imports torch, never Qt.
"""

from .api import Tracking, start, stop, track

__all__ = ["Tracking", "start", "stop", "track"]
