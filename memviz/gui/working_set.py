"""A long run opened from a file holds a working set of its allocations.

A run of millions of allocations does not fit the window whole (tens of bytes each,
and seconds to read). Opening one loads the whole timeline (samples, phases, steps)
and only the allocations of a span around the tracked peak, about WORKING_SET_EVENTS
tensor events, plus those live at its start. Moving the cursor outside that span
loads the span around the cursor instead, in a background thread; the run's
allocations are swapped when it is read, and every view redraws from them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..core.run import Run
from ..core.tensors import TensorLog

# about 1M allocations: well under a second to read, ~64 MiB of rows in the window
WORKING_SET_EVENTS = 2_000_000


def first_window(path: str, max_events: int = WORKING_SET_EVENTS) -> tuple[float, float] | None:
    """The span to load when ``path`` opens: around its tracked peak (its RSS peak
    when nothing was tracked); None to load every allocation."""
    import sqlite3

    from ..snapshot.reader import window_around
    from ..snapshot.untrusted import connect_read_only

    try:
        db = connect_read_only(path)
        try:
            row = db.execute("SELECT t FROM samples ORDER BY coalesce(tracked_total, rss) "
                             "DESC LIMIT 1").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return None  # the reader says what is wrong with the file
    t = float(row[0]) if row and isinstance(row[0], float | int) else 0.0
    return window_around(path, t, max_events)


@dataclass
class _Load:
    run: Run
    window: tuple[float, float]
    tensors: TensorLog | None = None
    error: str | None = None
    done: bool = False


class WorkingSets:
    """The windowed runs of one window, and the span each is loading now."""

    def __init__(self, max_events: int = WORKING_SET_EVENTS) -> None:
        self.max_events = max_events
        self._loads: dict[int, _Load] = {}  # by run id: at most one load a run

    def loading(self, run: Run) -> tuple[float, float] | None:
        load = self._loads.get(run.run_id)
        return None if load is None else load.window

    def follow(self, run: Run, t: float) -> bool:
        """Load the span around ``t`` if ``run`` is windowed and ``t`` is outside its
        loaded span (and not already being loaded); True if a load started."""
        window = run.tensors_window
        if window is None or not run.snapshot_path or window[0] <= t <= window[1]:
            return False
        pending = self._loads.get(run.run_id)
        if pending is not None and pending.window[0] <= t <= pending.window[1]:
            return False
        from ..snapshot.reader import window_around

        span = window_around(run.snapshot_path, t, self.max_events)
        if span is None:
            return False
        load = _Load(run, span)
        self._loads[run.run_id] = load
        threading.Thread(target=self._read, args=(load,), daemon=True,
                         name="memviz-working-set").start()
        return True

    def _read(self, load: _Load) -> None:
        from ..snapshot import SnapshotError, open_run

        try:
            load.tensors = open_run(load.run.snapshot_path, tensors_window=load.window).tensors
        except (SnapshotError, OSError, MemoryError) as exc:
            load.error = str(exc)
        load.done = True

    def poll(self) -> list[tuple[Run, str | None]]:
        """Runs whose newest load ended: their allocations swapped (or why not)."""
        ended = []
        for run_id, load in list(self._loads.items()):
            if not load.done:
                continue
            del self._loads[run_id]
            if load.tensors is not None:
                with load.run.lock:
                    load.run.tensors = load.tensors
                    load.run.tensors_window = load.window
                    load.run.revision += 1
            ended.append((load.run, load.error))
        return ended
