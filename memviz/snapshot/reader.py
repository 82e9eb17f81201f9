"""Open a ``.memviz`` file as a Run, so every view works on a saved run unchanged.

Anything that is not a memviz file of a version this build reads, or that is
corrupt, raises SnapshotError with a one-line reason: never a crash, never a
hang, and nothing in the file is executed.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from ..core.categories import CATEGORIES, SAMPLE_PREFIX
from ..core.run import Run
from ..core.spec import RunSpec, SpecError
from ..core.tensors import ALLOC, FREE, TrackingError
from ..core.text import printable
from ..protocol.messages import ProtocolError, validate_message
from . import codec
from .meta_check import MetaError, checked
from .recorder import SAMPLE_FIELDS
from .schema import COMPARISON_MAGIC, MAGIC, SCHEMA_VERSION

# Tensor events a file may hold: an honest file stores 8 to 30 bytes an event, so
# more than one event per EVENT_FLOOR_BYTES of file is a file that lies about itself
# (a decompression bomb), refused before it is inflated.
EVENT_FLOOR_BYTES = 2
EVENT_SLACK = 1 << 16
# What a damaged or hostile file can raise while it is read; each becomes one line.
DAMAGE = (sqlite3.DatabaseError, codec.CodecError, TrackingError, ProtocolError, SpecError,
          MetaError, KeyError, TypeError, ValueError, AttributeError, IndexError,
          OverflowError, RecursionError, json.JSONDecodeError)


class SnapshotError(ValueError):
    """The file cannot be opened as a memviz snapshot; the message (one printable line)
    says why."""

    def __init__(self, message: str) -> None:
        super().__init__(printable(message, one_line=True)[:500])


def _is_torch_snapshot(path: Path) -> bool:
    from .torch_import import looks_like_torch_snapshot

    return looks_like_torch_snapshot(path)


def _connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise SnapshotError(f"{path}: no such file")
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise SnapshotError(f"{path}: not a memviz snapshot (not an SQLite file)")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.DatabaseError as exc:
        raise SnapshotError(f"{path}: corrupt database ({exc})") from None


def read_meta(db: sqlite3.Connection, path: Path) -> dict:
    """The ``meta`` table as a dict, whatever the file claims to be."""
    try:
        rows = db.execute("SELECT key, value FROM meta").fetchall()
        return {k: json.loads(v) for k, v in rows}
    except (sqlite3.DatabaseError, json.JSONDecodeError, TypeError, RecursionError) as exc:
        raise SnapshotError(f"{path}: not a memviz snapshot ({exc})") from None


def checked_meta(db: sqlite3.Connection, path: Path, magic: str = MAGIC,
                 newest: int = SCHEMA_VERSION) -> dict:
    """The meta of a file with this header and a schema this build reads."""
    meta = read_meta(db, path)
    found = meta.get("magic")
    if found != magic:
        if found == COMPARISON_MAGIC:
            raise SnapshotError(f"{path}: a whole comparison, not one run: open it in the "
                                "window (each set's run opens there)")
        what = "comparison" if magic == COMPARISON_MAGIC else "snapshot"
        raise SnapshotError(f"{path}: not a memviz {what} (no memviz {what} header)")
    version = meta.get("schema_version")
    if not isinstance(version, int) or version > newest:
        raise SnapshotError(f"{path}: made by a newer memviz (schema {version}; this one reads "
                            f"up to {newest}); update memviz to open it")
    return meta


def open_run(path, run_id: int = 0, t_range: tuple[float, float] | None = None) -> Run:
    """A .memviz file, or a PyTorch memory snapshot (pickle or JSON), as a Run.

    ``t_range`` (seconds on the run's clock) loads only that window of a .memviz
    file: its samples, phases and steps, the tensor events inside it, and the
    allocations made before it that were still live at its start. Event batches
    after the window are not read at all."""
    path = Path(path)
    if path.is_file() and path.stat().st_size and _is_torch_snapshot(path):
        from . import torch_import

        try:
            return torch_import.to_run(torch_import.load(path), path.name, run_id,
                                       file_bytes=path.stat().st_size)
        except torch_import.TorchSnapshotError as exc:
            text = str(exc)
            raise SnapshotError(text if text.startswith(str(path)) else f"{path}: {text}") \
                from None
        except DAMAGE as exc:
            raise SnapshotError(f"{path}: damaged PyTorch snapshot "
                                f"({type(exc).__name__}: {exc})") from None
    db = _connect(path)
    try:
        meta = checked_meta(db, path)
        budget = EVENT_SLACK + path.stat().st_size // EVENT_FLOOR_BYTES
        return _load(db, meta, run_id, t_range, budget)
    except DAMAGE as exc:
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"{path}: damaged snapshot ({type(exc).__name__}: {exc})") from None
    finally:
        db.close()


def _window(t_range: tuple[float, float] | None, column: str = "t") -> tuple[str, tuple]:
    if t_range is None:
        return "", ()
    return f" WHERE {column} BETWEEN ? AND ?", (float(t_range[0]), float(t_range[1]))


class _Budget:
    """Events left to decode in this file (see EVENT_FLOOR_BYTES)."""

    def __init__(self, events: int) -> None:
        self.left = events

    def decode(self, blob: bytes) -> dict:
        cols = codec.decode(blob, max_events=self.left)
        self.left -= len(cols["t"])
        return cols


def _events(db: sqlite3.Connection, t_range: tuple[float, float] | None,
            budget: _Budget) -> list[dict]:
    """The tensor-event batches to replay (for a window: trimmed, see open_run)."""
    if t_range is None:
        return [budget.decode(blob) for (blob,) in
                db.execute("SELECT columns FROM event_batches ORDER BY batch")]
    t0, t1 = t_range
    parts: list[dict] = []
    for blob, in db.execute("SELECT columns FROM event_batches WHERE t_first <= ? "
                            "ORDER BY batch", (float(t1),)):
        cols = budget.decode(blob)
        keep = cols["t"] <= t1
        parts.append({k: v[keep] for k, v in cols.items()})
    parts = [c for c in parts if len(c["t"])]
    if not parts:
        return []
    merged = {k: np.concatenate([c[k] for c in parts]) for k in parts[0]}
    # what was freed before the window never shows in it
    gone = merged["id"][(merged["kind"] == FREE) & (merged["t"] < t0)]
    events = {k: v[~np.isin(merged["id"], gone)] for k, v in merged.items()}
    # allocation ids are row numbers: the kept allocations are numbered afresh
    kept = np.sort(events["id"][events["kind"] == ALLOC])
    at = np.searchsorted(kept, events["id"])
    known = (at < len(kept)) & (kept[np.minimum(at, len(kept) - 1)] == events["id"])
    events = {k: v[known] for k, v in events.items()}
    events["id"] = at[known].astype(events["id"].dtype)
    return [events]


def _load(db: sqlite3.Connection, meta: dict, run_id: int,
          t_range: tuple[float, float] | None = None, budget: int = 1 << 62) -> Run:
    fields = checked(meta)
    run = Run(RunSpec.from_dict(fields["spec"]), run_id=run_id)
    run.snapshot_path = str(db.execute("PRAGMA database_list").fetchone()[2])
    run.environment = fields["environment"]
    run.model = fields["model"]
    run.t0_wall = fields["t0_wall"]
    run.worker_summary = fields["summary"]
    run.end_reason = fields["end_reason"]
    run.error = fields["error"]
    state = fields["state"]
    # a file whose writer died mid-run says "running": what it holds is all there is
    run.state = state if state in ("finished", "stopped", "failed") else "stopped"
    messages: list[dict] = []
    where, args = _window(t_range)
    rows = db.execute(f"SELECT t, {', '.join(SAMPLE_FIELDS)}, by_category FROM samples"
                      f"{where} ORDER BY rowid", args).fetchall()
    if rows:
        table = np.array([r[:-1] for r in rows], dtype=np.float64)
        columns = {"t": table[:, 0]}
        for i, name in enumerate(SAMPLE_FIELDS, start=1):
            columns[name] = table[:, i]
        cats = [json.loads(r[-1]) if r[-1] else {} for r in rows]
        tracked = np.isfinite(columns["tracked_total"])
        if tracked.any():
            for c in CATEGORIES:  # NaN before tracking started, as in the live run
                values = np.array([d.get(c, 0) for d in cats], dtype=float)
                values[~tracked] = np.nan
                columns[SAMPLE_PREFIX + c] = values
        messages.append({"type": "samples", "columns": columns})
    for step, name, edge, t in db.execute("SELECT step, name, edge, t FROM phases"
                                          f"{where} ORDER BY rowid", args):
        messages.append({"type": "phase", "t": t, "step": step, "name": name, "edge": edge})
    has_detail = any(c[1] == "detailed" for c in db.execute("PRAGMA table_info(steps)"))
    detail = "detailed" if has_detail else "NULL"  # files from before it was recorded
    for row in db.execute("SELECT step, t, loss, seconds, tokens, peak_rss_bytes, "
                          f"peak_gpu_bytes, tracked_peak_bytes, {detail} FROM steps{where} "
                          "ORDER BY step", args):
        step, t, loss, seconds, tokens, peak_rss, peak_gpu, tracked, detailed = row
        messages.append({"type": "step_done", "t": t, "step": step, "loss": loss,
                         "seconds": seconds, "tokens": tokens, "peak_rss_bytes": peak_rss,
                         "peak_gpu_bytes": peak_gpu, "tracked_peak_bytes": tracked,
                         "detailed": None if detailed is None else bool(detailed)})
    for t, level, text in db.execute("SELECT t, level, text FROM log ORDER BY rowid"):
        messages.append({"type": "log", "t": t, "level": _text(level), "text": _text(text)})
    for t, step, label, live in db.execute("SELECT t, step, label, live_by_category FROM marks"):
        messages.append({"type": "mark", "t": t, "step": step, "label": _text(label),
                         "live_by_category": json.loads(live)})
    strings = [[kind, ident, _text(text)] for kind, ident, text in
               db.execute("SELECT kind, id, text FROM strings ORDER BY kind, id")]
    if strings:
        messages.append({"type": "strings", "entries": strings})
    stacks = [[i, json.loads(f)] for i, f in db.execute("SELECT id, frames FROM stacks")]
    if stacks:
        messages.append({"type": "stacks", "entries": stacks})
    for columns in _events(db, t_range, _Budget(budget)):
        messages.append({"type": "tensor_events", "columns": columns})
    for msg in messages:
        validate_message(msg)
    state, error = run.state, run.error
    run.apply_all(messages)
    run.state, run.error = state, error  # the stored outcome, not one replayed messages imply
    return run


def _text(value):
    """A string from the file, made printable (anything else is left for validation)."""
    return printable(value) if isinstance(value, str) else value
