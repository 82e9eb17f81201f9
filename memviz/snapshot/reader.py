"""Open a ``.memviz`` file as a Run, so every view works on a saved run unchanged.

Anything that is not a memviz file of a version this build reads, or that is
corrupt, raises SnapshotError with a one-line reason: never a crash, never a
hang, and nothing in the file is executed.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..core.categories import CATEGORIES, SAMPLE_PREFIX
from ..core.rank_files import ranks_beside
from ..core.run import Run
from ..core.spec import RunSpec, SpecError
from ..core.tensors import ALLOC, FREE, RETAG, TrackingError
from ..core.text import printable
from ..protocol.messages import ProtocolError, validate_message
from . import bounded_json, codec
from .decode_ahead import decoded_ahead
from .meta_check import MetaError, checked
from .recorder import SAMPLE_FIELDS
from .row_budget import TooManyRows, check_rows
from .schema import COMPARISON_MAGIC, MAGIC, SCHEMA_VERSION
from .untrusted import UntrustedSchema, connect_read_only

# Tensor events a file may hold: an honest file stores 8 to 30 bytes an event, so
# more than one event per EVENT_FLOOR_BYTES of file is a file that lies about itself
# (a decompression bomb), refused before it is inflated.
EVENT_FLOOR_BYTES = 2
EVENT_SLACK = 1 << 16
# What a damaged or hostile file can raise while it is read; each becomes one line.
DAMAGE = (sqlite3.DatabaseError, codec.CodecError, TrackingError, ProtocolError, SpecError,
          MetaError, KeyError, TypeError, ValueError, AttributeError, IndexError,
          OverflowError, RecursionError, json.JSONDecodeError)


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      (name,)).fetchone() is not None


class SnapshotError(ValueError):
    """The file cannot be opened as a memviz snapshot; the message (one printable line)
    says why."""

    def __init__(self, message: str) -> None:
        super().__init__(printable(message, one_line=True)[:500])


def is_torch_snapshot(path: Path) -> bool:
    from .torch_import import looks_like_torch_snapshot

    try:
        return looks_like_torch_snapshot(path)
    except OSError:  # unreadable (/proc/self/mem behind a name): connect_snapshot says so
        return False


def connect_snapshot(path: Path) -> sqlite3.Connection:
    """The file opened read-only as untrusted input (``untrusted.connect_read_only``)."""
    if not path.is_file():
        raise SnapshotError(f"{path}: " + ("not a regular file (a pipe, a device or a "
                                           "folder): memviz opens files only"
                                           if path.exists() else "no such file"))
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if head != b"SQLite format 3\x00":
        raise SnapshotError(f"{path}: not a memviz snapshot (not an SQLite file)")
    try:
        return connect_read_only(path)
    except UntrustedSchema as exc:
        raise SnapshotError(f"{path}: not a memviz snapshot ({exc})") from None
    except sqlite3.DatabaseError as exc:
        raise SnapshotError(f"{path}: corrupt database ({exc})") from None


def read_meta(db: sqlite3.Connection, path: Path) -> dict:
    """The ``meta`` table as a dict, whatever the file claims to be."""
    try:
        rows = db.execute("SELECT key, value FROM meta").fetchall()
        return {k: bounded_json.loads(v, f"its {k}") for k, v in rows}
    except (sqlite3.DatabaseError, ValueError, TypeError, RecursionError) as exc:
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
    if type(version) is not int or version < 1:  # not bool, "2", None, [2], 0 or -2^63
        shown = repr(version)[:30]
        raise SnapshotError(f"{path}: not a memviz {'snapshot' if magic == MAGIC else 'comparison'}"
                            f" (its schema version {shown} is not one memviz writes)")
    if version > newest:
        raise SnapshotError(f"{path}: made by a newer memviz (schema {version}; this one reads "
                            f"up to {newest}); update memviz to open it")
    return meta


def open_run(path: str | os.PathLike, run_id: int = 0,
             t_range: tuple[float, float] | None = None,
             tensors_window: tuple[float, float] | None = None,
             progress: Callable[[float], None] | None = None,
             device: int | None = None) -> Run:
    """A .memviz file, or a PyTorch memory snapshot (pickle or JSON), as a Run (of
    ``device``'s trace, for a snapshot of several GPUs; else of the busiest).

    ``t_range`` (seconds on the run's clock) loads only that window of a .memviz
    file: its samples, phases and steps, the tensor events inside it, and the
    allocations made before it that were still live at its start. Event batches
    after the window are not read at all. ``tensors_window`` loads the whole
    timeline (samples, phases, steps) and only that window's allocations: a long
    run's working set (``run.tensors_window`` says which). ``progress(fraction)`` is
    called as a PyTorch snapshot is read (they can take a minute)."""
    path = Path(path)
    try:
        return _open(path, run_id, t_range, tensors_window, progress, device)
    except MemoryError:  # a file honest in every count, larger than this machine's memory
        raise SnapshotError(f"{path}: not enough memory to open it") from None


def _open(path: Path, run_id: int, t_range: tuple[float, float] | None,
          tensors_window: tuple[float, float] | None,
          progress: Callable[[float], None] | None, device: int | None = None) -> Run:
    if path.is_file() and path.stat().st_size and is_torch_snapshot(path):
        from . import torch_import

        try:
            return torch_import.open_snapshot(path, path.name, run_id, progress, device)
        except torch_import.TorchSnapshotError as exc:
            text = str(exc)
            raise SnapshotError(text if text.startswith(str(path)) else f"{path}: {text}") \
                from None
        except DAMAGE as exc:
            raise SnapshotError(f"{path}: damaged PyTorch snapshot "
                                f"({type(exc).__name__}: {exc})") from None
    db = connect_snapshot(path)
    try:
        meta = checked_meta(db, path)
        try:
            check_rows(db, path.stat().st_size)
        except TooManyRows as exc:
            raise SnapshotError(f"{path}: {exc}") from None
        budget = EVENT_SLACK + path.stat().st_size // EVENT_FLOOR_BYTES
        run = _load(db, meta, run_id, t_range, budget, tensors_window)
    except DAMAGE as exc:
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"{path}: damaged snapshot ({type(exc).__name__}: {exc})") from None
    finally:
        db.close()
    _attach_ranks(run, path, t_range, tensors_window)
    return run


def _attach_ranks(run: Run, path: Path, t_range: tuple[float, float] | None,
                  tensors_window: tuple[float, float] | None) -> None:
    """One rank of a launched job: which; rank 0's file also brings the other ranks'
    files beside it (``train.rank1.memviz``, ...) into ``run.ranks``."""
    launched = run.environment.get("distributed")
    if not isinstance(launched, dict):
        return
    rank, world = launched.get("rank"), launched.get("world_size")
    if not (isinstance(rank, int) and isinstance(world, int) and 0 <= rank < world):
        return
    run.rank = rank
    if rank != 0:
        return
    for other, other_path in ranks_beside(path, world).items():
        try:
            rank_run = _open(other_path, run.run_id, t_range, tensors_window, None)
        except SnapshotError as exc:
            run.add_log("error", f"rank {other} could not be read: {exc}")
            continue
        if rank_run.rank == other:
            run.ranks[other] = rank_run
    missing = sorted(set(range(1, world)) - set(run.ranks))
    if missing:
        run.add_log("warning", f"ranks {', '.join(map(str, missing))} of {world} have no "
                               f"file beside {path.name} (each rank records to "
                               f"{path.stem}.rankN{path.suffix})")


def _window(t_range: tuple[float, float] | None, column: str = "t") -> tuple[str, tuple]:
    if t_range is None:
        return "", ()
    return f" WHERE {column} BETWEEN ? AND ?", (float(t_range[0]), float(t_range[1]))


class EventBudget:
    """Events left to decode in this file (see EVENT_FLOOR_BYTES)."""

    def __init__(self, events: int) -> None:
        self.left = events

    def decode(self, blob: bytes, only: tuple[str, ...] | None = None) -> dict:
        cols = codec.decode(blob, max_events=self.left, only=only)
        self.left -= len(next(iter(cols.values())))
        return cols


# what the pass over the batches wholly before a window reads of each: 10 bytes an
# event, not time (8 more, and half the inflating: every event there is before it)
_SCAN = ("id", "kind", "category")


def _events(db: sqlite3.Connection, t_range: tuple[float, float] | None,
            budget: EventBudget) -> Iterator[dict] | list[dict]:
    """The tensor-event batches to replay (for a window: see _window_events)."""
    if t_range is None:  # one batch at a time: decoded, applied, dropped
        rows = db.execute("SELECT columns FROM event_batches ORDER BY batch")
        return (cols for _, cols in decoded_ahead(rows, lambda row: budget.decode(row[0])))
    return _window_events(db, t_range, budget)


def _window_events(db: sqlite3.Connection, t_range: tuple[float, float],
                   budget: EventBudget) -> list[dict]:
    """The events of a window, and the allocations made before it still live at its
    start (with the category they had then), numbered afresh from 0.

    The batches before the window are read in two passes, in memory bounded by the
    live set rather than the history: first their id, kind and category columns
    (which allocations are live at the start, and their last retag; a batch wholly
    before the window needs no times), then in full only the few batches that made
    those allocations."""
    t0, t1 = t_range
    live = np.zeros(0, np.int64)  # ids allocated before t0 and not freed before it
    live_batch = np.zeros(0, np.int64)  # the batch that allocated each
    retag_id = np.zeros(0, np.int64)
    retag_category = np.zeros(0, np.uint8)
    window_parts: list[dict] = []

    def whole_before(t_last: object) -> bool:
        return isinstance(t_last, float | int) and t_last < t0

    rows = db.execute("SELECT batch, t_last, columns FROM event_batches WHERE t_first <= ? "
                      "ORDER BY batch", (float(t1),))
    for (batch, t_last, _), cols in decoded_ahead(rows, lambda row: budget.decode(
            row[2], only=_SCAN if whole_before(row[1]) else None)):
        scanned = whole_before(t_last)
        if scanned:
            before = np.ones(len(cols["id"]), bool)
        elif len(cols["t"]) and cols["t"][0] >= t0:
            keep = cols["t"] <= t1
            window_parts.append({k: v[keep] for k, v in cols.items()})
            continue
        else:
            before = cols["t"] < t0
        kind, ids = cols["kind"][before], cols["id"][before]
        made = ids[kind == ALLOC]
        live = np.concatenate([live, made])
        live_batch = np.concatenate([live_batch, np.full(len(made), batch, np.int64)])
        gone = np.isin(live, ids[kind == FREE])
        live, live_batch = live[~gone], live_batch[~gone]
        retag = kind == RETAG
        retag_id = np.concatenate([retag_id, ids[retag]])
        retag_category = np.concatenate([retag_category, cols["category"][before][retag]])
        still = np.isin(retag_id, live)
        retag_id, retag_category = retag_id[still], retag_category[still]
        if scanned:
            continue
        inside = ~before & (cols["t"] <= t1)
        if inside.any():
            window_parts.append({k: v[inside] for k, v in cols.items()})
    window_parts = [p for p in window_parts if len(p["t"])]
    made = (p["id"][p["kind"] == ALLOC] for p in window_parts)
    first = next((int(m[0]) for m in made if len(m)), None)  # the window's first allocation
    parts = _live_at_start(db, live, live_batch, retag_id, retag_category, budget)
    return _renumbered(parts + window_parts, np.sort(live), first)


def _renumbered(parts: list[dict], live: np.ndarray, first: int | None) -> list[dict]:
    """Allocation ids are row numbers: the allocations live at the window's start
    become 0..len(live)-1 and the window's own, whose ids run on without a gap from
    ``first``, follow. Each part is renumbered on its own, never merged into one
    copy of the window; an event naming neither (a damaged file) is dropped."""
    out = []
    for part in parts:
        ids = part["id"]
        own = ids >= first if first is not None else np.zeros(len(ids), bool)
        at = np.searchsorted(live, ids)
        earlier = np.zeros(len(ids), bool)
        if len(live):
            earlier = (at < len(live)) & (live[np.minimum(at, len(live) - 1)] == ids)
        known = own | earlier
        new_ids = np.where(own, len(live) + ids - (first or 0), at)
        kept = {k: v[known] for k, v in part.items()}
        kept["id"] = new_ids[known].astype(ids.dtype)
        if len(kept["t"]):
            out.append(kept)
    return out


def _live_at_start(db: sqlite3.Connection, live: np.ndarray, live_batch: np.ndarray,
                   retag_id: np.ndarray, retag_category: np.ndarray,
                   budget: EventBudget) -> list[dict]:
    """The allocation events of ``live`` (read from the batches that made them), each
    with the category of its last retag before the window."""
    parts = []
    for batch in np.unique(live_batch).tolist():
        (blob,) = db.execute("SELECT columns FROM event_batches WHERE batch = ?",
                             (batch,)).fetchone()
        cols = budget.decode(blob)
        mine = (cols["kind"] == ALLOC) & np.isin(cols["id"], live[live_batch == batch])
        parts.append({k: v[mine].copy() for k, v in cols.items()})
    if parts and len(retag_id):
        # the last retag of each id wins: unique over the reversed order keeps the last
        ids_rev, first = np.unique(retag_id[::-1], return_index=True)
        last_category = retag_category[::-1][first]
        for part in parts:
            at = np.searchsorted(ids_rev, part["id"])
            hit = (at < len(ids_rev)) & (ids_rev[np.minimum(at, len(ids_rev) - 1)]
                                         == part["id"])
            part["category"][hit] = last_category[at[hit]]
    return parts


def window_around(path: str | os.PathLike, t: float, max_events: int) -> tuple[float, float] | None:
    """A span of the run around ``t`` holding about ``max_events`` tensor events, or
    None when the whole run holds no more (read from the batches' index, nothing is
    decoded)."""
    db = connect_snapshot(Path(path))
    try:
        rows = db.execute("SELECT t_first, t_last, count FROM event_batches "
                          "ORDER BY batch").fetchall()
    except sqlite3.DatabaseError as exc:
        raise SnapshotError(f"{path}: damaged snapshot ({exc})") from None
    finally:
        db.close()
    if not rows or sum(r[2] for r in rows) <= max_events:
        return None
    first = np.array([r[0] for r in rows], dtype=np.float64)
    last = np.array([r[1] for r in rows], dtype=np.float64)
    count = np.array([r[2] for r in rows], dtype=np.int64)
    lo = hi = int(np.clip(np.searchsorted(first, t, side="right") - 1, 0, len(rows) - 1))
    held = int(count[lo])
    while held < max_events and (lo > 0 or hi < len(rows) - 1):
        grow_left = lo > 0 and (hi == len(rows) - 1 or t - first[lo] < last[hi] - t)
        if grow_left:
            lo -= 1
            held += int(count[lo])
        else:
            hi += 1
            held += int(count[hi])
    return float(first[lo]), float(last[hi])


def _load(db: sqlite3.Connection, meta: dict, run_id: int,
          t_range: tuple[float, float] | None = None, budget: int = 1 << 62,
          tensors_window: tuple[float, float] | None = None) -> Run:
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
    columns = _samples(db, where, args)
    if columns is not None:
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
                         "live_by_category": bounded_json.loads(live, "a mark")})
    if _has_table(db, "cuda_memory"):  # the allocator's state at each step's end
        for t, step, value in db.execute("SELECT t, step, value FROM cuda_memory "
                                         "ORDER BY rowid"):
            state = bounded_json.loads(value, "a step's CUDA memory")
            if not isinstance(state, dict):
                raise SnapshotError("a step's CUDA memory is not a map")
            messages.append({**state, "type": "cuda_memory", "t": t, "step": step})
    strings = [[kind, ident, _text(text)] for kind, ident, text in
               db.execute("SELECT kind, id, text FROM strings ORDER BY kind, id")]
    if strings:
        messages.append({"type": "strings", "entries": strings})
    stacks = [[i, bounded_json.loads(f, "a stack")]
              for i, f in db.execute("SELECT id, frames FROM stacks")]
    if stacks:
        messages.append({"type": "stacks", "entries": stacks})
    for msg in messages:
        validate_message(msg)
    state, error = run.state, run.error
    run.apply_all(messages)
    window = tensors_window or t_range
    events = _events(db, window, EventBudget(budget))
    # room for every allocation at once, not grown by doubling
    run.tensors.rows.reserve(min(allocation_count(db), budget) if window is None else
                             sum(int((p["kind"] == ALLOC).sum()) for p in events), exact=True)
    for columns in events:
        msg = {"type": "tensor_events", "columns": columns}
        validate_message(msg)
        run.apply_all([msg])
    run.tensors_window = tensors_window
    run.state, run.error = state, error  # the stored outcome, not one replayed messages imply
    return run


def allocation_count(db: sqlite3.Connection) -> int:
    """At most how many allocations the file holds (its last batch's first id plus
    that batch's events), without decoding anything."""
    last = db.execute("SELECT first_alloc_id, count FROM event_batches "
                      "ORDER BY batch DESC LIMIT 1").fetchone()
    if last is None or not all(isinstance(v, int) and v >= 0 for v in last):
        return 0
    return min(last[0] + last[1], 1 << 31)


def _samples(db: sqlite3.Connection, where: str, args: tuple) -> dict | None:
    """The samples as columns: read as one table (schema 2), or with each row's
    categories parsed from its JSON text (schema 1)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(samples)")}
    by_column = [SAMPLE_PREFIX + c for c in CATEGORIES]
    columnar = all(name in have for name in by_column)
    names = ["t", *SAMPLE_FIELDS, *(by_column if columnar else ["by_category"])]
    rows = db.execute(f"SELECT {', '.join(names)} FROM samples{where} ORDER BY rowid",
                      args).fetchall()
    if not rows:
        return None
    if columnar:
        table = np.array(rows, dtype=np.float64)  # NULL becomes NaN
        return {name: table[:, i] for i, name in enumerate(names)}
    table = np.array([r[:-1] for r in rows], dtype=np.float64)
    columns = {name: table[:, i] for i, name in enumerate(names[:-1])}
    cats = [json.loads(r[-1]) if r[-1] else {} for r in rows]
    tracked = np.isfinite(columns["tracked_total"])
    if tracked.any():
        for c in CATEGORIES:  # NaN before tracking started, as in the live run
            values = np.array([d.get(c, 0) for d in cats], dtype=float)
            values[~tracked] = np.nan
            columns[SAMPLE_PREFIX + c] = values
    return columns


def _text(value: Any) -> Any:
    """A string from the file, made printable (anything else is left for validation)."""
    return printable(value) if isinstance(value, str) else value
