"""What a ``.memviz`` file's small tables would cost to open, checked before they are read.

Each row of the log, phases, steps, samples, marks, strings and stacks becomes Python
objects of a few hundred bytes, while SQLite stores an empty row in ten: a file padded
with millions of them would ask for many times its size. Their rows are counted first
(SQLite counts without reading them into Python) and a file whose rows would cost
more than an honest file of its size is refused.
"""

from __future__ import annotations

import sqlite3

# What one row costs while a file is opened, at its highest (measured: the message it
# becomes, what the run keeps of it, the values read), in bytes.
ROW_BYTES = {"log": 420, "phases": 480, "steps": 500, "samples": 420, "marks": 500,
             "strings": 220, "stacks": 260, "cuda_memory": 700}
# An honest file's rows cost at most this many times their share of the file (a
# phase row, the densest: 480 bytes for about 30 of file; beside its samples and
# events, a run's file is never mostly phases).
BYTES_PER_FILE_BYTE = 12
SLACK_BYTES = 16 << 20
_NAMES = {"log": "log lines", "phases": "phase marks", "steps": "steps",
          "samples": "samples", "marks": "marks", "strings": "names", "stacks": "stacks",
          "cuda_memory": "steps' CUDA memory"}


class TooManyRows(ValueError):
    pass


def check_rows(db: sqlite3.Connection, file_bytes: int) -> None:
    """``TooManyRows`` (a one-line reason) when the rows would cost too much."""
    present = {name for (name,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    counts = {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
              for table in ROW_BYTES if table in present}
    cost = sum(n * ROW_BYTES[t] for t, n in counts.items())
    allowed = SLACK_BYTES + BYTES_PER_FILE_BYTE * file_bytes
    if cost > allowed:
        table = max(counts, key=lambda t: counts[t] * ROW_BYTES[t])
        raise TooManyRows(f"it holds {counts[table]:,} {_NAMES[table]}, more rows than a "
                          f"{file_bytes:,}-byte run holds (opening them would take "
                          f"{cost >> 20:,} MiB)")
