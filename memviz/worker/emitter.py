"""Batches worker messages into frames: at most every 50 ms, never one frame per message.

Samples are gathered as rows and sent as one columnar ``samples`` message per
flush; everything else keeps its order. A flush that holds more than a frame
should (a burst of tensor events) goes out as several frames of about 8 MiB.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from ..protocol.framing import FrameError, frames_of, pack_message
from ..protocol.messages import SAMPLE_COLUMNS
from ..protocol.transport import Connection

FLUSH_INTERVAL_S = 0.05


class Emitter:
    """``conn``: where the frames go; or ``deliver``: a function that takes each flush's
    messages in this process (a tracked program recording to its own file)."""

    def __init__(self, conn: Connection | None,
                 deliver: Callable[[list[dict]], None] | None = None) -> None:
        self.conn = conn
        self.deliver = deliver
        self._lock = threading.Lock()
        self._messages: list[dict] = []
        self._rows: list[tuple[float, ...]] = []
        self._wake = threading.Event()
        self._closing = False
        self.failed: BaseException | None = None
        self.sources: list[Callable[[], list[dict]]] = []
        self._thread = threading.Thread(target=self._loop, name="memviz-emitter", daemon=True)
        self._thread.start()

    def send(self, message: dict) -> None:
        with self._lock:
            self._messages.append(message)

    def sample(self, row: tuple[float, ...]) -> None:
        """One row of SAMPLE_COLUMNS values (NaN where unknown)."""
        with self._lock:
            self._rows.append(row)

    def _take(self) -> list[dict]:
        with self._lock:
            messages, self._messages = self._messages, []
            rows, self._rows = self._rows, []
        if rows:
            table = np.asarray(rows, dtype=np.float64)
            columns = {name: table[:, i].copy() for i, name in enumerate(SAMPLE_COLUMNS)}
            messages.insert(0, {"type": "samples", "columns": columns})
        for source in self.sources:
            messages.extend(source())
        return messages

    def flush(self) -> None:
        messages = self._take()
        if not messages:
            return
        if self.deliver is not None:
            self.deliver(messages)
        if self.conn is not None:
            for frame in frames_of([pack_message(m) for m in messages]):
                self.conn.send_frame(frame)

    def _loop(self) -> None:
        while not self._closing:
            self._wake.wait(FLUSH_INTERVAL_S)
            try:
                self.flush()
            except (OSError, FrameError) as exc:  # the other side went away, or a bug
                self.failed = exc
                print(f"memviz worker: the stream stopped: {exc}", file=sys.stderr, flush=True)
                return

    def close(self) -> None:
        """Send everything still queued, then stop the thread."""
        self._closing = True
        self._wake.set()
        self._thread.join(timeout=5)
        if self.failed is None:
            try:
                self.flush()
            except (OSError, FrameError) as exc:
                self.failed = exc


def now() -> float:
    """The worker's clock; every timestamp in the stream is from it."""
    return time.monotonic()
