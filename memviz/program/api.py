"""``memviz.track()``: profile the program that calls it, to a file or a window.

    import memviz
    with memviz.track(output="run.memviz"):   # or connect="tcp:127.0.0.1:7341"
        train()

Everything ``memviz run`` records is recorded: samples (RSS, USS, exact peaks,
GPU), every tensor with its category, module, op and phase, and the steps. The
file is written as the program runs, so a crash keeps everything up to it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ..core.categories import TRACK_LEVELS
from ..core.rank_files import launched_rank, rank_path
from ..core.spec import SpecError
from .result import TrackResult

_active: Tracking | None = None
_lock = threading.Lock()


def _default_output() -> str:
    stem = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "python"
    return f"{stem or 'python'}-{time.strftime('%Y%m%d-%H%M%S')}.memviz"


class Tracking:
    """One tracked stretch of this program. Use it as a context manager, or call
    ``start()`` and ``stop()``."""

    def __init__(self, output: str | os.PathLike | None = None, *, connect: str | None = None,
                 summary: str | os.PathLike | None = None, track: str = "tensors+stacks",
                 sample_hz: float = 20.0, model=None, optimizer=None,
                 force: bool = False, steps: str = "optimizer", token: str | None = None,
                 program: str | None = None, scan_heap: bool = True,
                 detail: str = "first:2,every:50") -> None:
        if track not in TRACK_LEVELS:
            raise SpecError(f"track must be one of {', '.join(TRACK_LEVELS)}, not {track!r}")
        if output is None and connect is None:
            output = _default_output()
        self.output = None if output is None else Path(output)
        self.connect = connect
        self.summary_path = None if summary is None else Path(summary)
        self.level = track
        self.sample_hz = sample_hz
        self.models = _as_list(model)
        self.optimizers = _as_list(optimizer)
        self.force = force
        self.steps = steps
        self.token = token
        self.program = program
        self.scan_heap = scan_heap
        self.detail = detail
        self.program_tracker = None
        self._recorder = None
        self._conn = None
        self._scratch: str | None = None
        self._previous_hook = None
        self.result: TrackResult | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> Tracking:
        global _active
        with _lock:
            if _active is not None:
                raise RuntimeError("memviz is already tracking this process")
            _active = self
        try:
            # torch first: a ``memviz record`` that started this program answers the
            # handshake below once its own imports are done, which run meanwhile
            from .program import ProgramTracker

            self._open_outputs()
            self.program_tracker = ProgramTracker(
                level=self.level, sample_hz=self.sample_hz, conn=self._conn,
                deliver=self._recorder.write if self._recorder else None,
                models=self.models, optimizers=self.optimizers, steps=self.steps,
                program=self.program, detail=self.detail)
            self.program_tracker.start(self.scan_heap)
        except BaseException:
            self._close_outputs("failed")
            _active = None
            raise
        if self._conn is not None:
            threading.Thread(target=self._listen_for_stop, daemon=True,
                             name="memviz-track-control").start()
        self._previous_hook = sys.excepthook
        sys.excepthook = self._unhandled
        atexit.register(self.stop)
        return self

    def stop(self, error: BaseException | None = None) -> TrackResult | None:
        """End tracking: the last step is closed, the file finished, the summary written.
        Returns (and keeps in ``result``) the figures: peaks, categories, steps."""
        global _active
        if self.program_tracker is None or _active is not self:
            return self.result
        with contextlib.suppress(ValueError):
            atexit.unregister(self.stop)
        if sys.excepthook == self._unhandled:
            sys.excepthook = self._previous_hook
        self.program_tracker.stop(error)
        state = "finished" if error is None or isinstance(error, SystemExit) else \
            "stopped" if isinstance(error, KeyboardInterrupt) else "failed"
        self._close_outputs(state)
        # nothing of the program is held once tracking stops: a model deleted later is
        # collected, and a later tracking in this process counts nothing of this one's
        self.program_tracker = None
        self.models = self.optimizers = None
        _active = None
        return self.result

    def __enter__(self) -> Tracking:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop(exc)

    def _unhandled(self, exc_type, exc, tb) -> None:
        self.stop(exc)
        (self._previous_hook or sys.__excepthook__)(exc_type, exc, tb)

    # -- where the stream goes -------------------------------------------------------
    def _open_outputs(self) -> None:
        launched = launched_rank()
        if self.output is not None and launched is not None:  # each rank a file of its own
            self.output = rank_path(self.output, launched[0])
        path = self.output
        if path is None and self.summary_path is not None:  # a summary needs a recording
            fd, self._scratch = tempfile.mkstemp(prefix="memviz-", suffix=".memviz")
            os.close(fd)
            path = Path(self._scratch)
        if path is not None:
            from ..snapshot import Recorder

            self._recorder = Recorder(path, {}, overwrite=self.force or bool(self._scratch))
        if self.connect:
            from ..protocol import address, handshake
            from ..protocol.token import TOKEN_ENV
            from ..protocol.transport import Connection

            token = self.token or os.environ.get(TOKEN_ENV, "")
            if not token:
                raise SpecError(f"connecting to a window needs its token: set {TOKEN_ENV}")
            self._conn = Connection(address.connect(address.parse(self.connect)))
            handshake.perform(self._conn, token, "program")

    def _close_outputs(self, state: str) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.finish(state)
            with contextlib.suppress(Exception):  # a failed read must not hide the run's own
                self.result = TrackResult.from_file(recorder.path, state,
                                                    keep_file=not self._scratch)
            if self.summary_path is not None and self.result is not None:
                self.summary_path.write_text(json.dumps(self.result.summary, indent=2) + "\n")
        elif self.program_tracker is not None:
            tracker = self.program_tracker.tracker
            with contextlib.suppress(Exception):
                self.result = TrackResult.streamed(state,
                                                   tracker.summary() if tracker else None)
        if self._scratch:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(self._scratch + suffix)
            self._scratch = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _listen_for_stop(self) -> None:
        """A window's Stop: tracking ends at the next phase edge; the program goes on."""
        from ..protocol.transport import ConnectionClosed

        conn = self._conn
        try:
            while conn is not None:
                if any(m["type"] == "stop" for m in conn.receive()):
                    self.program_tracker.ask_to_stop()
                    return
        except (ConnectionClosed, OSError, ValueError):
            return

    # -- reading ---------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The .memviz file being written (None when only streaming to a window)."""
        return self.output


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def track(output: str | os.PathLike | None = None, **options: Any) -> Tracking:
    """Track this program (see Tracking for the options); use it with ``with``."""
    return Tracking(output, **options)


def start(output: str | os.PathLike | None = None, **options: Any) -> Tracking:
    """Start tracking this program until ``stop()`` (or until it exits)."""
    return Tracking(output, **options).start()


def stop() -> TrackResult | None:
    """Stop the tracking that ``start()`` began; its result (None if none was active)."""
    return _active.stop() if _active is not None else None
