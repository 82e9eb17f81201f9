"""Save As for a recorded run: a consistent copy of its .memviz file.

SQLite's backup API copies a database that is still being written (a run in
progress) as one consistent snapshot, which copying the file's bytes would not.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def copy_snapshot(source: str | Path, target: str | Path, *, overwrite: bool = False) -> None:
    source, target = Path(source) if source else None, Path(target)
    if source is None or not str(source).endswith(".memviz") or not source.is_file():
        raise ValueError("only runs recorded by memviz can be saved as .memviz "
                         "(use File → Export for other formats)")
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} exists")
        if target.resolve() == source.resolve():
            return
        target.unlink()
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
