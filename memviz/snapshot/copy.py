"""Save As for a recorded run: a consistent copy of its .memviz file.

SQLite's backup API copies a database that is still being written (a run in
progress) as one consistent snapshot, which copying the file's bytes would not.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .untrusted import connect_read_only


def copy_snapshot(source: str | Path, target: str | Path, *, overwrite: bool = False) -> None:
    origin, target = Path(source) if source else None, Path(target)
    if origin is None or not str(origin).endswith(".memviz") or not origin.is_file():
        raise ValueError("only runs recorded by memviz can be saved as .memviz "
                         "(use File → Export for other formats)")
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} exists")
        if target.resolve() == origin.resolve():
            return
        target.unlink()
    src = connect_read_only(origin)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode = DELETE")  # a finished file: nothing beside it
    finally:
        dst.close()
        src.close()
