"""The contract between a session and the recorder it feeds (``memviz.snapshot``)."""

from __future__ import annotations


class RecorderError(OSError):
    """The recorder can no longer write its file (disk full, file too large, I/O
    error); the message says which file and why, for the user."""
