"""The ``allocations`` table: one row per tracked allocation, for SQL, pandas and DuckDB.

Tensor events are stored as compressed columnar batches (a few bytes each), which
only memviz can read. Written out as plain rows they would take 40 bytes an
allocation more in every file; instead they are built when a query asks for them,
as temporary tables of a read-only connection (``snapshot.sql_access``), with a
view that names every code:

    SELECT module, op, sum(nbytes) FROM allocations_named
    WHERE category = 'activation' GROUP BY module, op ORDER BY 3 DESC

It walks the batches in order keeping only the allocations still live, so its
memory is the run's live set, not its history.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ..core.categories import CATEGORIES
from ..core.tensors import ALLOC, FREE, RETAG
from . import codec

# the tracker's phase codes (memviz.tracking.tracker.PHASES), in order
PHASES = ("", "load", "forward", "backward", "optimizer", "generate")
COLUMNS = ("id", "t_alloc_us", "t_free_us", "nbytes", "category", "dtype", "shape", "device",
           "module", "op", "phase", "step", "stack")
# Times are whole microseconds on the run's clock (the view gives seconds).
DDL = """
CREATE TEMP TABLE IF NOT EXISTS allocations (
    id INTEGER PRIMARY KEY, t_alloc_us INTEGER, t_free_us INTEGER, nbytes INTEGER,
    category INTEGER, dtype INTEGER, shape INTEGER, device INTEGER, module INTEGER,
    op INTEGER, phase INTEGER, step INTEGER, stack INTEGER
);
CREATE TEMP TABLE IF NOT EXISTS category_names (code INTEGER PRIMARY KEY, name TEXT);
CREATE TEMP TABLE IF NOT EXISTS phase_names (code INTEGER PRIMARY KEY, name TEXT);
CREATE TEMP VIEW IF NOT EXISTS allocations_named AS
SELECT a.id, a.t_alloc_us / 1e6 AS t_alloc, a.t_free_us / 1e6 AS t_free, a.nbytes,
       c.name AS category,
       d.text AS dtype, replace(s.text, '×', 'x') AS shape, v.text AS device,
       m.text AS module,
       o.text AS op, p.name AS phase, a.step
FROM temp.allocations a
LEFT JOIN temp.category_names c ON c.code = a.category
LEFT JOIN temp.phase_names p ON p.code = a.phase
LEFT JOIN main.strings d ON d.kind = 'dtype' AND d.id = a.dtype
LEFT JOIN main.strings s ON s.kind = 'shape' AND s.id = a.shape
LEFT JOIN main.strings v ON v.kind = 'device' AND v.id = a.device
LEFT JOIN main.strings m ON m.kind = 'module' AND m.id = a.module
LEFT JOIN main.strings o ON o.kind = 'op' AND o.id = a.op;
CREATE TEMP VIEW IF NOT EXISTS live_at_peak AS
SELECT n.* FROM temp.allocations_named n JOIN temp.allocations a ON a.id = n.id,
     (SELECT CAST(value AS INTEGER) AS t_us FROM main.meta WHERE key = 'peak_t_us') p
WHERE a.t_alloc_us <= p.t_us AND (a.t_free_us IS NULL OR a.t_free_us > p.t_us);
"""
FLUSH_ROWS = 50_000
T_FREE, CATEGORY = 2, 4


def write_allocations(db: sqlite3.Connection, decode: Callable[[bytes], dict] = codec.decode
                      ) -> int:
    """Fill the temporary allocations table from the file's event batches (each read
    with ``decode``); the rows written."""
    db.executescript(DDL)
    db.executemany("INSERT OR REPLACE INTO temp.category_names VALUES (?, ?)",
                   enumerate(CATEGORIES))
    db.executemany("INSERT OR REPLACE INTO temp.phase_names VALUES (?, ?)", enumerate(PHASES))
    db.execute("DELETE FROM temp.allocations")
    insert = f"INSERT INTO temp.allocations VALUES ({', '.join('?' * len(COLUMNS))})"
    live: dict[int, list] = {}
    done: list[list] = []
    written = 0
    for (blob,) in db.execute("SELECT columns FROM main.event_batches ORDER BY batch"):
        cols = decode(blob)
        kinds = cols["kind"].tolist()
        ids = cols["id"].tolist()
        times = (cols["t"] * 1e6).round().astype("int64").tolist()
        cats = cols["category"].tolist()
        rest = [cols[name].tolist() for name in ("nbytes", "dtype", "shape", "device",
                                                  "module", "op", "phase", "step", "stack")]
        for i, kind in enumerate(kinds):
            ident = ids[i]
            if kind == ALLOC:
                nbytes, dtype, shape, device, module, op, phase, step, stack = (r[i] for r in rest)
                live[ident] = [ident, times[i], None, nbytes, cats[i], dtype, shape, device,
                               module, op, phase, step, stack]
            elif kind == RETAG:
                row = live.get(ident)
                if row is not None:
                    row[CATEGORY] = cats[i]
            elif kind == FREE:
                row = live.pop(ident, None)
                if row is not None:
                    row[T_FREE] = times[i]
                    done.append(row)
        if len(done) >= FLUSH_ROWS:
            db.executemany(insert, done)
            written += len(done)
            done = []
    done.extend(live.values())
    db.executemany(insert, done)
    return written + len(done)
