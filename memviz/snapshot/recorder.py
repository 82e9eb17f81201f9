"""Writes a run's message stream to a ``.memviz`` file as it arrives.

It consumes the same validated messages as ``Run.apply`` (the session feeds
both), and commits at most every ``COMMIT_INTERVAL_S`` and at each finished step: a
crash of the worker or of the process holding the recorder leaves a file that
opens, with every finished step and everything up to the last commit (tensor
events up to ``EVENT_FLUSH_S`` before it). A file that can no longer be written (a
full disk) raises RecorderError once; the session then stops the run and says why.
The file is opened in WAL mode so a reader may look while the run goes on.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from ..core.categories import CATEGORIES, SAMPLE_PREFIX
from ..core.recording import RecorderError
from ..version import __version__
from . import codec
from .schema import DDL, MAGIC, SCHEMA_VERSION

COMMIT_INTERVAL_S = 0.5
# Tensor events are stored in batches of up to EVENT_BATCH events; a batch is
# written when it is full or its oldest event has waited EVENT_FLUSH_S (what a crash
# of the recording process can lose).
EVENT_BATCH = 16_384
EVENT_FLUSH_S = 1.0
SAMPLE_FIELDS = ("rss", "uss", "peak_rss", "system_used", "gpu_device_used",
                 "gpu_process_used", "torch_allocated", "torch_reserved", "tracked_total")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL" or "disk is full" in str(exc):
        return os.strerror(errno.ENOSPC)
    return str(exc)


class Recorder:
    def __init__(self, path: str | os.PathLike, spec: dict, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.failed: RecorderError | None = None
        self._pending_events: list[dict] = []  # tensor events not yet in a batch
        self._pending_count = 0
        self._pending_since = 0.0
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(f"{self.path} exists (choose another name or overwrite)")
            self.path.unlink()
        self.lock = threading.Lock()
        self._batch = 0
        self._last_commit = time.monotonic()
        try:
            self.db = sqlite3.connect(self.path, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(DDL)
            self._meta({"magic": MAGIC, "schema_version": SCHEMA_VERSION,
                        "memviz_version": __version__, "created": time.time(), "spec": spec,
                        "state": "running"})
            self.db.commit()
        except (sqlite3.Error, OSError) as exc:  # not even the header fits
            with contextlib.suppress(Exception):
                self.db.close()
            for left in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
                with contextlib.suppress(OSError):
                    left.unlink()  # no empty file is left under the name
            raise RecorderError(f"could not write {self.path}: {_reason(exc)}") from None

    def _meta(self, items: dict) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            [(k, json.dumps(v)) for k, v in items.items()])

    def write(self, messages: list[dict]) -> None:
        """Record one frame's messages (validated, as Run.apply_all takes them). Raises
        RecorderError, once, when the file can no longer be written; later calls do
        nothing."""
        with self.lock:
            if self.failed is not None:
                return
            try:
                for msg in messages:
                    handler = getattr(self, "_on_" + msg["type"], None)
                    if handler is not None:
                        handler(msg)
                # a finished step is committed at once: a kill of this process loses
                # no completed step, whatever the interval
                if time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S or any(
                        msg["type"] == "step_done" for msg in messages):
                    self._flush_events(older_than=EVENT_FLUSH_S)
                    self.db.commit()
                    self._last_commit = time.monotonic()
            except (sqlite3.Error, OSError) as exc:
                self.failed = RecorderError(f"could not write {self.path}: {_reason(exc)}")
                raise self.failed from None

    def _on_run_started(self, msg: dict) -> None:
        self._meta({"environment": msg["environment"], "model": msg["model"],
                    "t0_wall": msg["t0_wall"], "spec": msg["spec"]})

    def _on_discovered(self, msg: dict) -> None:
        self._meta({"model": msg["model"], "spec": msg["spec"]})

    def _on_samples(self, msg: dict) -> None:
        cols = msg["columns"]
        n = len(cols["t"])
        nan = np.full(n, np.nan)
        names = ("t", *SAMPLE_FIELDS, *(SAMPLE_PREFIX + c for c in CATEGORIES))
        table = np.column_stack([np.asarray(cols.get(name, nan), dtype=np.float64)
                                 for name in names])
        # SQLite stores NULL for a missing value; a row as Python floats at once
        rows = [tuple(None if v != v else v for v in row) for row in table.tolist()]
        self.db.executemany(f"INSERT INTO samples (t, {', '.join(names[1:])}) "
                            f"VALUES ({', '.join('?' * len(names))})", rows)

    def _on_phase(self, msg: dict) -> None:
        self.db.execute("INSERT INTO phases VALUES (?, ?, ?, ?)",
                        (msg["step"], msg["name"], msg["edge"], msg["t"]))

    def _on_step_done(self, msg: dict) -> None:
        detailed = msg.get("detailed")
        self.db.execute("INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (msg["step"], msg["t"], msg["loss"], msg["seconds"], msg["tokens"],
                         msg["peak_rss_bytes"], msg["peak_gpu_bytes"],
                         msg.get("tracked_peak_bytes"),
                         None if detailed is None else int(bool(detailed))))

    def _on_log(self, msg: dict) -> None:
        self.db.execute("INSERT INTO log VALUES (?, ?, ?)", (msg["t"], msg["level"], msg["text"]))

    def _on_error(self, msg: dict) -> None:
        self._meta({"error": {k: msg[k] for k in ("kind", "message", "traceback")},
                    "state": "failed"})

    def _on_run_done(self, msg: dict) -> None:
        items = {"summary": msg["summary"], "end_reason": msg["reason"], "t_end": msg["t"]}
        peak_t = ((msg["summary"] or {}).get("tracking") or {}).get("peak_t")
        if isinstance(peak_t, int | float):
            # the tracked peak's time in the allocations table's unit (the view
            # live_at_peak, built by sql_access, reads it)
            items["peak_t_us"] = round(peak_t * 1e6)
        self._meta(items)

    def _on_mark(self, msg: dict) -> None:
        self.db.execute("INSERT INTO marks VALUES (?, ?, ?, ?)",
                        (msg["t"], msg["step"], msg["label"], json.dumps(msg["live_by_category"])))

    def _on_strings(self, msg: dict) -> None:
        self.db.executemany("INSERT OR REPLACE INTO strings VALUES (?, ?, ?)",
                            [tuple(e) for e in msg["entries"]])

    def _on_stacks(self, msg: dict) -> None:
        self.db.executemany("INSERT OR REPLACE INTO stacks VALUES (?, ?)",
                            [(i, json.dumps(frames)) for i, frames in msg["entries"]])

    def _on_tensor_events(self, msg: dict) -> None:
        cols = msg["columns"]
        if not len(cols["t"]):
            return
        if not self._pending_events:
            self._pending_since = time.monotonic()
        self._pending_events.append(cols)
        self._pending_count += len(cols["t"])
        if self._pending_count >= EVENT_BATCH:
            self._flush_events()

    def _flush_events(self, *, older_than: float = 0.0) -> None:
        """Write the pending tensor events as one batch (if they have waited long
        enough): few large batches compress several times better than many small ones,
        however slowly the events come."""
        if not self._pending_events or \
                time.monotonic() - self._pending_since < older_than:
            return
        parts, self._pending_events, self._pending_count = self._pending_events, [], 0
        cols = parts[0] if len(parts) == 1 else \
            {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        allocs = cols["id"][cols["kind"] == 0]
        self.db.execute("INSERT INTO event_batches VALUES (?, ?, ?, ?, ?, ?)",
                        (self._batch, float(cols["t"][0]), float(cols["t"][-1]), len(cols["t"]),
                         int(allocs[0]) if len(allocs) else None, codec.encode(cols)))
        self._batch += 1

    def _on_cuda_memory(self, msg: dict) -> None:
        self.db.execute("INSERT INTO cuda_memory VALUES (?, ?, ?)",
                        (msg["t"], msg["step"], json.dumps(
                            {k: v for k, v in msg.items() if k not in ("type", "t", "step")})))

    def finish(self, state: str, error: dict | None = None) -> None:
        """The run's final state (finished, stopped, failed); commits and closes. A file
        that could not be written keeps what was committed before."""
        with self.lock:
            try:
                if self.failed is None:
                    self._flush_events()
                    items: dict = {"state": state}
                    if error is not None:
                        items["error"] = error
                    self._meta(items)
                    self.db.commit()
                    self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    # finished: a plain database again, so a reader leaves no -wal or
                    # -shm file beside it
                    self.db.execute("PRAGMA journal_mode = DELETE")
            except (sqlite3.Error, OSError) as exc:
                self.failed = RecorderError(f"could not write {self.path}: {_reason(exc)}")
            finally:
                with contextlib.suppress(sqlite3.Error):
                    self.db.close()
