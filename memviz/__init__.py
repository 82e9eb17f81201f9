"""memviz: where the memory of a language model goes, measured live.

``memviz.track()`` profiles the program that calls it; importing memviz itself
loads neither torch nor Qt.
"""

from __future__ import annotations

from .version import __version__

__all__ = ["__version__", "start", "stop", "track"]


def track(output=None, **options):
    """Track this program's memory, to a ``.memviz`` file or a window:

        with memviz.track(output="run.memviz"):
            train()

    See ``memviz.program.api.Tracking`` for every option. When the block ends, the
    tracking's ``result`` holds the figures (``memviz.program.result.TrackResult``)."""
    from .program.api import track as _track

    return _track(output, **options)


def start(output=None, **options):
    """Start tracking this program until ``memviz.stop()`` or its exit."""
    from .program.api import start as _start

    return _start(output, **options)


def stop():
    """Stop what ``memviz.start()`` began; returns its ``TrackResult`` (peaks total, by
    category and by module, the steps, the file), or None if nothing was tracking."""
    from .program.api import stop as _stop

    return _stop()
