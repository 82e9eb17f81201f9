"""A whole comparison in one ``.memviz`` file.

The file is an SQLite database like a run's, with its own header
(``magic = memviz-comparison``): the base workload in ``meta``, one row per set
in ``sets`` (its name, techniques, options, the estimator's prediction and the
figures the comparison table showed, as JSON), and each set's own run file,
whole, in ``runs.snapshot``. ``sqlite3`` reads the table directly; a run comes
out with ``SELECT writefile('set1.memviz', snapshot) FROM runs WHERE idx = 1``
in the sqlite3 shell, and opens like any run.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.run import Run
from ..core.text import printable_tree
from ..version import __version__
from .reader import DAMAGE, SnapshotError, checked_meta, connect_snapshot, open_run, read_meta
from .schema import COMPARISON_MAGIC

COMPARISON_VERSION = 1
DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sets (idx INTEGER PRIMARY KEY, name TEXT NOT NULL, entry TEXT NOT NULL);
CREATE TABLE runs (idx INTEGER PRIMARY KEY, snapshot BLOB NOT NULL);
"""


def write_comparison(path: str | os.PathLike, base: dict[str, Any],
                     sets: list[dict[str, Any]], run_files: list[str | None],
                     overwrite: bool = False) -> None:
    """``sets``: each set's description (name, techniques, options, estimate, entry);
    ``run_files``: each set's recorded run (None where it was not recorded)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (choose another name or overwrite)")
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    db = sqlite3.connect(partial)
    whole = False
    try:
        db.executescript(DDL)
        db.executemany("INSERT INTO meta VALUES (?, ?)", [
            (k, json.dumps(v)) for k, v in {
                "magic": COMPARISON_MAGIC, "schema_version": COMPARISON_VERSION,
                "memviz_version": __version__, "created": time.time(), "base": base}.items()])
        for idx, (entry, run_file) in enumerate(zip(sets, run_files, strict=True)):
            db.execute("INSERT INTO sets VALUES (?, ?, ?)",
                       (idx, entry["name"], json.dumps(entry, default=str)))
            if run_file:
                db.execute("INSERT INTO runs VALUES (?, ?)",
                           (idx, sqlite3.Binary(Path(run_file).read_bytes())))
        db.commit()
        whole = True
    finally:
        db.close()
        if not whole:  # a full disk: nothing half-written is left, the old file stays
            partial.unlink(missing_ok=True)
    partial.replace(path)  # whole or not at all


def is_comparison(path: str | os.PathLike) -> bool:
    try:
        db = connect_snapshot(Path(path))
    except SnapshotError:
        return False
    try:
        return read_meta(db, Path(path)).get("magic") == COMPARISON_MAGIC
    except SnapshotError:
        return False
    finally:
        db.close()


# The private copies of opened comparisons' runs: kept while this process may save
# the comparison again (each run's file is its part of it), removed when it exits.
_SCRATCH: list[tempfile.TemporaryDirectory] = []
COPY_CHUNK = 1 << 20


def _copy_member(db: sqlite3.Connection, idx: int, member: Path) -> None:
    """One set's run file out of the comparison, a MiB at a time (never whole in
    memory), if the folder has room for it."""
    size = db.execute("SELECT length(snapshot) FROM runs WHERE idx = ?", (idx,)).fetchone()[0]
    free = shutil.disk_usage(member.parent).free
    if size > free:
        raise SnapshotError(f"set {idx} needs {size / 2**20:,.0f} MB in the temporary folder "
                            f"and {free / 2**20:,.0f} MB are free")
    rowid = db.execute("SELECT rowid FROM runs WHERE idx = ?", (idx,)).fetchone()[0]
    with db.blobopen("runs", "snapshot", rowid, readonly=True) as blob, \
            open(member, "wb") as out:
        while chunk := blob.read(COPY_CHUNK):
            out.write(chunk)


def open_comparison(path: str | os.PathLike, next_run_id: Callable[[], int] | None = None
                    ) -> tuple[dict[str, Any], list[tuple[dict[str, Any], Run | None]]]:
    """The base workload and every set with its run (opened from a private copy, removed
    when this process exits)."""
    path = Path(path)
    db = connect_snapshot(path)
    scratch = tempfile.TemporaryDirectory(prefix="memviz-comparison-")
    kept = False
    try:
        meta = checked_meta(db, path, COMPARISON_MAGIC, COMPARISON_VERSION)
        members = {idx for (idx,) in db.execute("SELECT idx FROM runs")}
        rows = db.execute("SELECT idx, entry FROM sets ORDER BY idx").fetchall()
        folder = Path(scratch.name)
        out = []
        for idx, text in rows:
            entry = printable_tree(json.loads(text))
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise SnapshotError(f"{path}: set {idx} is damaged")
            run = None
            if idx in members:
                member = folder / f"set-{idx}.memviz"
                try:
                    _copy_member(db, idx, member)
                    run = open_run(member, run_id=next_run_id() if next_run_id else idx + 1)
                except SnapshotError as exc:
                    raise SnapshotError(f"{path}: set {entry['name']!r}: {exc}") from None
            out.append((entry, run))
        base = meta.get("base") or {}
        if not isinstance(base, dict):
            raise SnapshotError(f"{path}: its base workload is not a map")
        _SCRATCH.append(scratch)
        kept = True
        return printable_tree(base), out
    except DAMAGE as exc:
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"{path}: damaged comparison ({type(exc).__name__}: {exc})") \
            from None
    finally:
        db.close()
        if not kept:  # refused: nothing of it is kept
            scratch.cleanup()
