"""Opening a ``.memviz`` file that may come from anyone: read-only, by a quoted path,
with SQLite's own defences on."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote


def read_only_uri(path: Path | str) -> str:
    """A ``file:`` URI for ``path`` opened read-only. The path is percent-quoted (a
    ``#``, ``?`` or ``%41`` in a name must not change which file opens). A finished
    file (no ``-wal`` beside it) opens immutable, so reading it writes nothing beside
    it; one still being written (or left by a crash) is read with its log."""
    path = Path(path)
    live = Path(f"{path}-wal").exists()
    return f"file:{quote(str(path.resolve()))}?mode=ro" + ("" if live else "&immutable=1")


def connect_read_only(path: Path | str) -> sqlite3.Connection:
    """The file opened read-only with its schema untrusted: a view or trigger the file
    defines may not call functions with side effects."""
    db = sqlite3.connect(read_only_uri(path), uri=True)
    db.execute("PRAGMA trusted_schema = OFF")
    return db
