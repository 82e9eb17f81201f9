"""Malformed and hostile files, built from a real recording, for every entry point.

Each case is a name, how to build the file from a good ``.memviz`` (into a
folder), and what the one-line refusal must say (None: the file is honest
enough to open, and must open with nothing dangerous shown). Types, truncations,
decompression and memo bombs, terminal escapes and pickles that run code.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sqlite3
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgpack

ANSI = "\x1b]0;pwned\x07\x1b[2J\x1b[31m"


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, Path], Path]  # (good .memviz, folder) -> the file
    refusal: str | None  # a fragment of the one-line refusal, or None: it opens


def _copy(good: Path, folder: Path, name: str, sql: list[tuple[str, tuple]] = ()) -> Path:
    path = folder / f"{name}.memviz"
    shutil.copy(good, path)
    db = sqlite3.connect(path)
    for statement, args in sql:
        db.execute(statement, args)
    db.commit()
    db.close()
    return path


def _meta(key: str, value) -> Callable[[Path, Path], Path]:
    text = value if isinstance(value, str) and value.startswith("!raw:") else json.dumps(value)
    text = text.removeprefix("!raw:")
    name = f"meta-{key}-{zlib.crc32(text.encode()):08x}"
    return lambda good, folder: _copy(good, folder, name, [
        ("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, text))])


def _sql(name: str, *statements: tuple[str, tuple]) -> Callable[[Path, Path], Path]:
    return lambda good, folder: _copy(good, folder, name, list(statements))


def _view_instead_of(table: str, name: str, select: str) -> Callable[[Path, Path], Path]:
    """memviz's ``table`` replaced by a view that computes ``select`` when read."""
    return lambda good, folder: _copy(good, folder, name, [
        (f"DROP TABLE {table}", ()), (f"CREATE VIEW {table} AS {select}", ())])


RECURSIVE = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
             "SELECT 'magic' AS key, n AS value FROM r")


def _renamed(name: str) -> Callable[[Path, Path], Path]:
    """A good file under a name that a careless URI would read otherwise."""
    def build(good: Path, folder: Path) -> Path:
        path = folder / name
        shutil.copy(good, path)
        return path
    return build


def _linked(name: str, target: str) -> Callable[[Path, Path], Path]:
    def build(good: Path, folder: Path) -> Path:
        path = folder / name
        path.symlink_to(target)
        return path
    return build


def _event_bomb(good: Path, folder: Path) -> Path:
    """8 batches that each claim 4M events, zlib-packed into a few hundred KiB."""
    from memviz.snapshot.codec import DTYPES

    n = 1 << 22
    columns = {name: zlib.compress(b"\0" * (n * __import__("numpy").dtype(dt).itemsize), 9)
               for name, dt in DTYPES.items()}
    blob = msgpack.packb({"n": n, "c": columns}, use_bin_type=True)
    statements = [("DELETE FROM event_batches", ())]
    statements += [("INSERT INTO event_batches VALUES (?, 0, 1, ?, 0, ?)", (i, n, blob))
                   for i in range(8)]
    return _copy(good, folder, "event-bomb", statements)


def _truncated(good: Path, folder: Path) -> Path:
    path = folder / "truncated.memviz"
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def _snapshot(name: str, data: dict, protocol: int = 4) -> Callable[[Path, Path], Path]:
    return lambda good, folder: _write(folder, name, pickle.dumps(data, protocol=protocol))


def _json_snapshot(name: str, text: str) -> Callable[[Path, Path], Path]:
    return lambda good, folder: _write(folder, name, text.encode())


class _Runs:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _runs_code(protocol: int) -> Callable[[Path, Path], Path]:
    def build(good: Path, folder: Path) -> Path:
        marker = str(folder / f"ran-{protocol}")
        data = {"segments": [], "device_traces": [[_Runs(marker)]]}
        return _write(folder, f"runs-code-{protocol}.pickle", pickle.dumps(data, protocol))

    return build


def _memo_bomb(good: Path, folder: Path) -> Path:
    """Three million trace entries that are memo references to one dict (with a frame of
    100 kB): about 6 MB of pickle."""
    entry = {"action": "alloc", "addr": 4096, "size": 1 << 20,
             "frames": [{"filename": "x" * 100_000, "line": 1, "name": "f"}]}
    data = {"segments": [], "device_traces": [[entry] * 3_000_000]}
    return _write(folder, "memo-bomb.pickle", pickle.dumps(data, protocol=4))


def _empty_dict_flood(good: Path, folder: Path) -> Path:
    """Two bytes an object: three million empty dicts in a trace."""
    data = {"segments": [], "device_traces": [[{} for _ in range(3_000_000)]]}
    return _write(folder, "empty-dict-flood.pickle", pickle.dumps(data, protocol=4))


def _flood(name: str, padding: Callable[[], list]) -> Callable[[Path, Path], Path]:
    """An empty snapshot with ``padding()`` beside its traces: what reading it builds
    is all that can cost."""
    return lambda good, folder: _write(folder, name, pickle.dumps(
        {"segments": [], "device_traces": [], "padding": padding()}, protocol=4))


def _meta_flood(good: Path, folder: Path) -> Path:
    """An environment of three million empty maps: 9 MB of text, 200 MB once parsed."""
    text = '{"padding": [' + ",".join(["{}"] * 3_000_000) + "]}"
    return _copy(good, folder, "meta-flood", [
        ("INSERT OR REPLACE INTO meta VALUES ('environment', ?)", (text,))])


def _json_flood(good: Path, folder: Path) -> Path:
    text = '{"segments": [], "device_traces": [], "padding": [' + \
        ",".join(["{}"] * 3_000_000) + "]}"
    return _write(folder, "maps.json", text.encode())


def _many_device_traces(good: Path, folder: Path) -> Path:
    """20,000 device traces of one entry each, 28 bytes a trace (538 KB): each trace's
    columns, had they been made, cost more than the file."""
    data = {"segments": [], "device_traces": [
        [{"action": "alloc", "addr": 512, "size": 8, "time_us": 1.5}] for _ in range(20_000)]}
    return _write(folder, "many-device-traces.pickle", pickle.dumps(data, protocol=4))


def _segment_flood(good: Path, folder: Path) -> Path:
    """300,000 segments reserved and as many failed requests, in 11 MB: what the
    Segments view keeps of them stays in columns."""
    trace = []
    for i in range(300_000):
        trace.append({"action": "segment_alloc", "addr": (1 << 40) + (i << 21),
                      "size": 2 << 20, "time_us": i})
        trace.append({"action": "oom", "size": 1 << 30, "device_free": 0, "time_us": i})
    return _write(folder, "segment-flood.pickle", pickle.dumps(
        {"segments": [], "device_traces": [trace]}, protocol=4))


def _names_out_of_range(column: str) -> Callable[[Path, Path], Path]:
    """Every allocation of the first event batch names ``column`` id 2**31 - 1, which
    no string ever was (a table sized by it would take 176 GiB)."""
    def build(good: Path, folder: Path) -> Path:
        from memviz.snapshot import codec

        db = sqlite3.connect(good)
        batch, blob = db.execute("SELECT batch, columns FROM event_batches "
                                 "ORDER BY batch LIMIT 1").fetchone()
        db.close()
        columns = {k: v.copy() for k, v in codec.decode(blob).items()}
        columns[column][:] = 2**31 - 1
        return _copy(good, folder, f"{column}-out-of-range", [(
            "UPDATE event_batches SET columns = ? WHERE batch = ?",
            (codec.encode(columns), batch))])
    return build


def _rows(name: str, statement: str, count: int) -> Callable[[Path, Path], Path]:
    """``count`` tiny rows of one table: ten bytes of file, hundreds of memory each."""
    def build(good: Path, folder: Path) -> Path:
        path = _copy(good, folder, name)
        db = sqlite3.connect(path)
        db.executemany(statement, [()] * count)
        db.commit()
        db.close()
        return path
    return build


CASES: list[Case] = [
    # .memviz files with fields of the wrong type
    Case("environment-as-list", _meta("environment", ["a", "b"]), "environment is a list"),
    Case("model-as-text", _meta("model", "gpt2"), "model is a str"),
    Case("spec-as-list", _meta("spec", [1, 2]), "no run spec"),
    Case("spec-wrong-field", _meta("spec", {"model": "m", "batch_size": "4"}), "batch_size"),
    Case("spec-techniques-text", _meta("spec", {"model": "m", "techniques": "lora"}),
         "techniques"),
    Case("error-as-list", _meta("error", ["oom"]), "error is a list"),
    Case("error-message-number", _meta("error", {"kind": "oom", "message": 3,
                                                 "traceback": ""}), "error lacks"),
    Case("t0-infinite", _meta("t0_wall", "!raw:Infinity"), "t0_wall"),
    Case("state-number", _meta("state", 7), "state is not text"),
    Case("module-tree-ints", _meta("model", {"module_tree": [1, 2, 3]}), "module tree row"),
    Case("summary-list", _meta("summary", [1]), "summary is a list"),
    Case("meta-deep-json", _meta("environment", "!raw:" + "[" * 100_000 + "]" * 100_000),
         "not a memviz snapshot"),
    Case("schema-text", _meta("schema_version", "1"), "is not one memviz writes"),
    *(Case(f"schema-{i}", _meta("schema_version", v), "is not one memviz writes")
      for i, v in enumerate((0, -(1 << 63), None, [2], "2", True))),
    Case("schema-future", _meta("schema_version", 99), "newer memviz"),
    Case("sample-text", _sql("sample-text", ("UPDATE samples SET rss = 'lots'", ())),
         "damaged snapshot"),
    Case("strings-gap", _sql("strings-gap", ("INSERT INTO strings VALUES ('op', 999999, 'x')",
                                             ())), "arrived out of order"),
    Case("strings-unknown-table", _sql("strings-table", (
        "INSERT INTO strings VALUES ('nope', 0, 'x')", ())), "damaged snapshot"),
    Case("stacks-not-json", _sql("stacks-json", ("INSERT INTO stacks VALUES (9999, '[[[')",
                                                 ())), "damaged snapshot"),
    Case("marks-list", _sql("marks-list", ("INSERT INTO marks VALUES (0, 0, 'x', '[1]')", ())),
         "damaged snapshot"),
    Case("phase-edge", _sql("phase-edge", ("INSERT INTO phases VALUES (0, 'forward', 'x', 0)",
                                           ())), "phase.edge"),
    Case("step-loss-text", _sql("step-loss", ("UPDATE steps SET loss = 'low'", ())),
         "damaged snapshot"),
    Case("event-blob-garbage", _sql("event-garbage", (
        "UPDATE event_batches SET columns = x'00ff00ff'", ())), "damaged snapshot"),
    Case("event-bomb", _event_bomb, "more tensor events than its size can hold"),
    Case("truncated", _truncated, ""),  # SQLite says how: corrupt, or not a memviz file
    # honest enough to open, with escapes that must never reach a terminal
    Case("escapes-in-texts", _sql("escapes", (
        "UPDATE strings SET text = ? || text WHERE kind = 'module'", (ANSI,)), (
        "INSERT INTO log VALUES (0, 'info', ?)", (ANSI + "log line",))), None),
    Case("escapes-in-model-name", _meta("spec", {"model": ANSI + "gpt2-tiny"}), None),
    # PyTorch snapshots
    Case("blocks-of-ints", _snapshot("blocks.pickle", {"segments": [{"blocks": [1, 2]}],
                                                       "device_traces": []}),
         "blocks are not a list of maps"),
    Case("size-infinite", _json_snapshot("inf.json", '{"segments": [], "device_traces": '
                                         '[[{"action": "alloc", "addr": 1, '
                                         '"size": Infinity}]]}'), "not a whole number"),
    Case("address-negative", _snapshot("neg.pickle", {"segments": [], "device_traces": [[
        {"action": "alloc", "addr": -5, "size": 8}]]}), "not a whole number"),
    Case("segments-not-list", _snapshot("segs.pickle", {"segments": 5, "device_traces": []}),
         "no segments or device_traces"),
    Case("traces-of-ints", _snapshot("traces.pickle", {"segments": [], "device_traces": [1]}),
         "device trace is not a list"),
    Case("not-a-map", _snapshot("list.pickle", [1, 2, 3]), "not a PyTorch memory snapshot"),
    Case("truncated-pickle", lambda good, folder: _write(
        folder, "cut.pickle", pickle.dumps({"segments": [], "device_traces": [[]]})[:-5]),
        "not a readable PyTorch snapshot"),
    Case("json-deep", _json_snapshot("deep.json", "{" + '"a":[' * 50_000), "not a readable"),
    Case("memo-bomb", _memo_bomb, "more than a"),
    Case("empty-dict-flood", _empty_dict_flood, "more than a"),
    # floods that cost many times their size beside the traces (memory bounded)
    Case("empty-list-flood", _flood("empty-lists.pickle",
                                    lambda: [[] for _ in range(3_000_000)]), "more than a"),
    Case("one-item-map-flood", _flood("one-item-maps.pickle",
                                      lambda: [{"a": 1} for _ in range(1_000_000)]),
         "more than a"),
    Case("distinct-text-flood", _flood("texts.pickle",
                                       lambda: [f"t{i}" for i in range(1_000_000)]),
         "more than a"),
    Case("json-map-flood", _json_flood, "more than"),
    Case("many-device-traces", _many_device_traces, "device traces"),
    Case("segment-flood", _segment_flood, None),
    Case("meta-json-flood", _meta_flood, "more than"),
    Case("marks-flood", _rows("marks-flood", "INSERT INTO marks VALUES (0, 0, '', '{}')",
                              1_000_000), "more rows than"),
    Case("log-flood", _rows("log-flood", "INSERT INTO log VALUES (0.5, 'info', '')",
                            1_000_000), "more rows than"),
    Case("module-out-of-range", _names_out_of_range("module"), "never arrived"),
    Case("op-out-of-range", _names_out_of_range("op"), "never arrived"),
    Case("escapes-in-frames", _snapshot("frames.pickle", {"segments": [], "device_traces": [[
        {"action": "alloc", "addr": 64, "size": 512, "time_us": 1,
         "frames": [{"filename": ANSI + "train.py", "line": 3, "name": ANSI}]}]]}), None),
    *(Case(f"runs-code-protocol-{p}", _runs_code(p), "refused: the pickle asks for")
      for p in (2, 4, 5)),
    # a file that defines views under memviz's table names: read, they would never end
    # or would allocate gigabytes; refused before anything is read from them
    Case("meta-recursive-view", _view_instead_of("meta", "view-recursive", RECURSIVE),
         "holds a view meta that memviz never writes"),
    Case("samples-printf-view", _view_instead_of(
        "samples", "view-printf", "SELECT printf('%.*c', 1000000000, 'x') AS t"),
        "holds a view samples that memviz never writes"),
    Case("steps-zeroblob-view", _view_instead_of(
        "steps", "view-zeroblob", "SELECT zeroblob(2000000000) AS step"),
        "holds a view steps that memviz never writes"),
    # tables whose schema computes: a generated column runs on every read of its table,
    # an FTS table reads its content= view; trusted_schema=OFF stops neither
    Case("generated-printf", _sql("generated-printf", (
        "ALTER TABLE steps ADD COLUMN pad TEXT GENERATED ALWAYS AS "
        "(printf('%.*c', 900000000, 'x')) VIRTUAL", ())),
        "its table steps is not as memviz writes it"),
    Case("generated-zeroblob", _sql("generated-zeroblob", (
        "DROP TABLE log", ()), ("CREATE TABLE log (t REAL, level TEXT, text TEXT, "
                                "pad BLOB GENERATED ALWAYS AS (zeroblob(900000000)))", ())),
        "its table log is not as memviz writes it"),
    Case("fts5-content-view", _sql("fts5-content-view", ("DROP TABLE strings", ()), (
        f"CREATE VIEW endless AS {RECURSIVE.replace('key', 'kind')}", ()), (
        "CREATE VIRTUAL TABLE strings USING fts5(kind, text, content='endless')", ())),
        "that memviz never writes"),
    Case("fts4-content-view", _sql("fts4-content-view", ("DROP TABLE marks", ()), (
        f"CREATE VIEW endless AS {RECURSIVE}", ()), (
        "CREATE VIRTUAL TABLE marks USING fts4(key, value, content='endless')", ())),
        "that memviz never writes"),
    Case("trigger", _sql("trigger", (
        "CREATE TRIGGER t AFTER INSERT ON log BEGIN SELECT zeroblob(900000000); END", ())),
        "holds a trigger t that memviz never writes"),
    Case("expression-index", _sql("expression-index", (
        "CREATE INDEX pad ON steps (printf('%.*c', 900000000, 'x'))", ())),
        "holds an index pad that memviz never writes"),
    Case("extra-table", _sql("extra-table", ("CREATE TABLE extra (x)", ())),
         "holds a table extra that memviz never writes"),
    # a name that leads where reading fails (EIO), and names no encoder can write
    Case("proc-self-mem", _linked("mem.memviz", "/proc/self/mem"), "cannot be read"),
    Case("proc-self-mem-pickle", _linked("mem.pickle", "/proc/self/mem"), "cannot be read"),
    Case("lone-surrogates", _json_snapshot("surrogates.json", json.dumps(
        {"segments": [], "device_traces": [[{
            "action": "alloc", "addr": 64, "size": 512, "time_us": 1,
            "frames": [{"filename": "train\ud800.py", "line": 3, "name": "step\udfff"}]}]]},
        ensure_ascii=True)), None),  # JSON's escapes carry them; UTF-8 cannot
    # names that change which file an unquoted SQLite URI opens
    Case("name-with-hash", _renamed("run#1.memviz"), None),
    Case("name-with-percent", _renamed("evil%41.memviz"), None),
    Case("name-with-question-mark", _renamed("run?mode=rwc.memviz"), None),
]
