"""Schema of the ``.memviz`` file (version 1).

Small, row-shaped data is stored a row each (samples too, a REAL column per
category, so that a long run's samples are read as columns at once) so that ``sqlite3`` and
``pandas.read_sql`` read it directly. Tensor events, which can number millions,
are stored as columnar batches: each column delta-encoded where that helps, then
zlib-compressed, well under 32 bytes per event.
"""

from __future__ import annotations

from ..core.categories import CATEGORIES, SAMPLE_PREFIX

# 2: samples hold each category's bytes in a column of its own (cat_parameter, ...)
# instead of one JSON text per row; version 1 files still open
SCHEMA_VERSION = 2
MAGIC = "memviz-run"
COMPARISON_MAGIC = "memviz-comparison"  # a whole comparison (comparison_file.py)

DDL_TEMPLATE = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    t REAL NOT NULL, rss REAL, uss REAL, peak_rss REAL, system_used REAL,
    gpu_device_used REAL, gpu_process_used REAL, torch_allocated REAL, torch_reserved REAL,
    tracked_total REAL, by_category TEXT, {category_columns}
);
CREATE INDEX IF NOT EXISTS samples_t ON samples (t);
CREATE TABLE IF NOT EXISTS phases (step INTEGER, name TEXT, edge TEXT, t REAL);
CREATE TABLE IF NOT EXISTS steps (
    step INTEGER PRIMARY KEY, t REAL, loss REAL, seconds REAL, tokens INTEGER,
    peak_rss_bytes INTEGER, peak_gpu_bytes INTEGER, tracked_peak_bytes INTEGER,
    detailed INTEGER
);
CREATE TABLE IF NOT EXISTS log (t REAL, level TEXT, text TEXT);
CREATE TABLE IF NOT EXISTS marks (t REAL, step INTEGER, label TEXT, live_by_category TEXT);
CREATE TABLE IF NOT EXISTS strings (kind TEXT, id INTEGER, text TEXT, PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS stacks (id INTEGER PRIMARY KEY, frames TEXT);
CREATE TABLE IF NOT EXISTS event_batches (
    batch INTEGER PRIMARY KEY, t_first REAL, t_last REAL, count INTEGER,
    first_alloc_id INTEGER, columns BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS event_batches_t ON event_batches (t_first, t_last);
CREATE TABLE IF NOT EXISTS cuda_memory (t REAL, step INTEGER, value TEXT);
"""

DDL = DDL_TEMPLATE.replace("{category_columns}", ", ".join(
    f"{SAMPLE_PREFIX}{c} REAL" for c in CATEGORIES))
# what schema 1 wrote: samples without a column per category
DDL_V1 = DDL_TEMPLATE.replace("by_category TEXT, {category_columns}", "by_category TEXT")
