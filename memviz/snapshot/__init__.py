"""The ``.memviz`` file: one SQLite database per run, written while the run goes.

Pure Python + numpy + sqlite3: no Qt, no torch. ``docs/snapshot.md`` documents
the schema for sqlite3 and pandas users.
"""

from .reader import SnapshotError, open_run
from .recorder import Recorder
from .sql_access import connect_sql

__all__ = ["Recorder", "SnapshotError", "connect_sql", "open_run"]
