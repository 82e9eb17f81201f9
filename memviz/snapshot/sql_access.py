"""SQL over a run's file, with every allocation as a row.

The file stores tensor events as compressed batches only (a few bytes an event);
``connect`` opens it read-only, as untrusted input, and builds from those batches
the temporary table ``allocations`` and the views ``allocations_named`` and
``live_at_peak`` (``allocations_table``), beside the file's own tables:

    db = memviz.snapshot.connect_sql("run.memviz")
    pandas.read_sql("SELECT * FROM allocations_named", db)

Building costs about a second per million allocations, in memory bounded by the
run's live set; the file itself is never written.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .allocations_table import write_allocations
from .reader import (
    DAMAGE,
    EVENT_FLOOR_BYTES,
    EVENT_SLACK,
    EventBudget,
    SnapshotError,
    checked_meta,
    connect_snapshot,
)
from .untrusted import allow_user_queries


def connect_sql(path: str | os.PathLike) -> sqlite3.Connection:
    """A read-only connection to a ``.memviz`` file with its allocations as rows;
    ``SnapshotError`` (one line) for a file that is not one."""
    path = Path(path)
    db = connect_snapshot(path)
    try:
        checked_meta(db, path)
        db.execute("PRAGMA temp_store = FILE")  # a long run's rows on disk, not in memory
        budget = EventBudget(EVENT_SLACK + path.stat().st_size // EVENT_FLOOR_BYTES)
        write_allocations(db, budget.decode)
        db.commit()
        allow_user_queries(db)
    except DAMAGE as exc:
        db.close()
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"{path}: damaged snapshot ({type(exc).__name__}: {exc})") from None
    except BaseException:
        db.close()
        raise
    return db
