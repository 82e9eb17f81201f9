"""Where a stream's messages go on the controller's side: the Run, the snapshot file,
the memory cap, and (for ``memviz record --connect``) a window they are relayed to.

Every kind of session (a worker it started, a worker it attached to, a user's
program) reads frames from its connection and hands them to ``serve``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from ..core.recording import RecorderError
from ..core.run import Run
from ..protocol.framing import FrameError
from ..protocol.messages import ProtocolError
from ..protocol.transport import Connection, ConnectionClosed
from .memory_cap import MemoryCap

MIB = 1 << 20


def over_cap(messages: list[dict], cap: int, device_memory: bool) -> int | None:
    """The highest sampled memory in ``messages`` if it passed ``cap``, else None.

    The figure is the process's RSS and the kernel's high-water mark between
    samples, or with ``device_memory`` the process's GPU memory (NVML) and torch's
    reserved bytes."""
    import numpy as np

    names = ("gpu_process_used", "torch_reserved") if device_memory else ("rss", "peak_rss")
    highest = None
    for msg in messages:
        if msg["type"] != "samples":
            continue
        for name in names:
            column = msg["columns"].get(name)
            if column is not None and len(column) and np.isfinite(column).any():
                value = int(np.nanmax(column))
                highest = value if highest is None else max(highest, value)
    return highest if highest is not None and highest > cap else None


class Feed:
    """``stop()`` asks the source to end cleanly (a disk that filled); ``kill()`` ends
    it at once (a run past its memory cap)."""

    def __init__(self, run: Run, *, recorder=None, memory_cap: MemoryCap | None = None,
                 relay: Connection | None = None, stop: Callable[[], None] = lambda: None,
                 kill: Callable[[], None] = lambda: None) -> None:
        self.run = run
        self.recorder = recorder
        self.memory_cap = memory_cap
        self.relay = relay
        self.stop = stop
        self.kill = kill

    def consume(self, messages: list[dict]) -> None:
        self.run.apply_all(messages)
        if self.recorder is not None:
            self._record(messages)
        if self.memory_cap is not None and self.memory_cap.bytes is not None:
            self._enforce_cap(messages)
        if self.relay is not None:
            self._relay(messages)

    def _record(self, messages: list[dict]) -> None:
        """Write to the snapshot file; when it cannot be written, stop the run cleanly
        and say why (the run in memory keeps everything)."""
        try:
            self.recorder.write(messages)
        except RecorderError as exc:
            self.run.fail("disk", str(exc), even_if_ended=True)
            self.stop()

    def _enforce_cap(self, messages: list[dict]) -> None:
        cap = self.memory_cap
        highest = over_cap(messages, cap.bytes, cap.device_memory)
        if highest is None:
            return
        what = "GPU memory" if cap.device_memory else "RSS"
        self.run.fail("oom", f"out of memory: the run reached {highest / MIB:,.0f} MiB of {what}, "
                             f"over the memory cap of {cap.bytes / MIB:,.0f} MiB, and was stopped",
                      cap_bytes=cap.bytes, peak_bytes=highest)
        self.kill()

    def _relay(self, messages: list[dict]) -> None:
        try:
            self.relay.send(messages)
        except (OSError, FrameError) as exc:  # the window went away: recording goes on
            self.run.add_log("error", f"stopped streaming to the window: {exc}")
            with contextlib.suppress(OSError):
                self.relay.close()
            self.relay = None


def until_started(conn: Connection) -> tuple[dict, list[dict]]:
    """A stream's first messages, up to and with its ``run_started`` (which says what
    the stream is: a program, a rank and which), and that message."""
    pending: list[dict] = []
    while (started := next((m for m in pending if m["type"] == "run_started"),
                           None)) is None:
        pending.extend(conn.receive())
    return started, pending


def serve(conn: Connection, feed: Feed, source: str, on_malformed: Callable[[], None]) -> None:
    """Read ``conn`` into ``feed`` until it closes; malformed data fails the run (and
    ``on_malformed`` ends its source)."""
    try:
        while True:
            feed.consume(conn.receive())
    except ConnectionClosed:
        pass
    except (FrameError, ProtocolError) as exc:
        feed.run.fail("protocol", f"malformed data from the {source}: {exc}")
        on_malformed()
    except OSError as exc:
        if not feed.run.finished:
            feed.run.add_log("error", f"connection to the {source} lost: {exc}")
    finally:
        conn.close()


def finish_recording(recorder, run: Run) -> None:
    """Close the run's file with its final state. A file that could not be written
    (a full disk at the last commit) fails the run, whatever the worker said: the
    file does not hold all that was measured, and the exit code must say so."""
    recorder.finish(run.state, run.error)
    if recorder.failed is not None:
        run.fail("disk", str(recorder.failed), even_if_ended=True)
