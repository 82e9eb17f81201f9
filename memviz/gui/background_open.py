"""Large PyTorch snapshots open in a background thread, with their progress.

A snapshot of a few GB takes a minute to walk; the window keeps drawing and says how
far it is meanwhile, and the run joins the list when it is read (or the error
banner says why not). ``.memviz`` files need none of this: they open as a working
set in about a second whatever their length.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from ..core.run import Run

# smaller snapshots open at once (a tenth of a second); a 20 MB one took a minute
BACKGROUND_BYTES = 1 << 20


class OpenCancelled(Exception):
    """Raised from the progress callback: the user cancelled the open."""


def opens_in_background(path: str) -> bool:
    from ..snapshot.reader import is_torch_snapshot

    file = Path(path)
    return file.is_file() and file.stat().st_size > BACKGROUND_BYTES and \
        is_torch_snapshot(file)


@dataclass
class Opening:
    path: str
    run_id: int
    fraction: float = 0.0
    run: Run | None = None
    error: str | None = None
    done: bool = False
    cancelled: bool = False


class BackgroundOpens:
    """The snapshots being opened now, each in its own thread."""

    def __init__(self) -> None:
        self._open: list[Opening] = []

    def start(self, path: str, run_id: int) -> Opening:
        opening = Opening(path, run_id)
        self._open.append(opening)
        threading.Thread(target=self._read, args=(opening,), daemon=True,
                         name="memviz-open").start()
        return opening

    @staticmethod
    def _read(opening: Opening) -> None:
        from ..snapshot import SnapshotError, open_run

        def progress(fraction: float) -> None:
            if opening.cancelled:
                raise OpenCancelled
            opening.fraction = fraction

        try:
            opening.run = open_run(opening.path, run_id=opening.run_id, progress=progress)
        except OpenCancelled:
            opening.run = None
        except (SnapshotError, OSError, MemoryError) as exc:
            opening.error = str(exc) if not isinstance(exc, MemoryError) else \
                f"{opening.path}: not enough memory to open it"
        opening.done = True

    def pending(self) -> list[Opening]:
        return [o for o in self._open if not o.done and not o.cancelled]

    def cancel(self) -> int:
        """Stop every open under way (each stops at its next batch); how many."""
        going = self.pending()
        for opening in going:
            opening.cancelled = True
        return len(going)

    def poll(self) -> list[Opening]:
        """Those that ended since the last poll (not the cancelled: they say nothing)."""
        ended = [o for o in self._open if o.done and not o.cancelled]
        self._open = [o for o in self._open if not o.done]
        return ended
