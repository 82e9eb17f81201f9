"""Opening a ``.memviz`` file that may come from anyone: read-only, by a quoted path,
its schema compared with memviz's own before anything is read, and an authorizer
on the connection.

SQLite runs what a file's schema says on every read: a generated column
(``printf('%.*c', 900000000, 'x')``), a view, a trigger, a virtual table whose
``content=`` is an endless view. ``PRAGMA trusted_schema=OFF`` stops only functions
marked as having side effects, not ``printf``, ``zeroblob`` or a recursive CTE. So
a file is read only once every object in it is, statement for statement, one that
memviz writes (a run of schema 1 or 2, a comparison): no view, trigger, virtual
table or generated column can be there. The authorizer then denies what memviz
never does on such a file: attaching or writing another database, writing the
file, functions that allocate at will, recursion.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote


class UntrustedSchema(sqlite3.DatabaseError):
    """The file's schema is not one memviz writes; the message names the object."""


def read_only_uri(path: Path | str) -> str:
    """A ``file:`` URI for ``path`` opened read-only. The path is percent-quoted (a
    ``#``, ``?`` or ``%41`` in a name must not change which file opens). A finished
    file (no ``-wal`` beside it) opens immutable, so reading it writes nothing beside
    it; one still being written (or left by a crash) is read with its log."""
    path = Path(path)
    live = Path(f"{path}-wal").exists()
    return f"file:{quote(str(path.resolve()))}?mode=ro" + ("" if live else "&immutable=1")


@functools.cache
def memviz_objects() -> frozenset[tuple[str, str, str, str | None]]:
    """Every schema object memviz writes, as ``sqlite_master`` holds it: (type, name,
    table, statement), for runs of schema 1 and 2 and for comparisons."""
    from .comparison_file import DDL as COMPARISON_DDL
    from .schema import DDL, DDL_V1

    objects: set[tuple[str, str, str, str | None]] = set()
    for ddl in (DDL, DDL_V1, COMPARISON_DDL):
        made = sqlite3.connect(":memory:")
        made.executescript(ddl)
        objects.update(made.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
        made.close()
    return frozenset(objects)


def check_schema(db: sqlite3.Connection) -> None:
    """Raise UntrustedSchema unless every object in ``db``'s schema is one memviz
    writes, exactly (its kind, name, table and statement)."""
    known = memviz_objects()
    names = {(kind, name) for kind, name, _, _ in known}
    for kind, name, table, sql in db.execute(
            "SELECT type, name, tbl_name, sql FROM main.sqlite_master"):
        if (kind, name, table, sql) in known:
            continue
        shown = str(name)[:60].encode("unicode_escape").decode("ascii")
        if (kind, name) in names:
            raise UntrustedSchema(f"its {kind} {shown} is not as memviz writes it")
        kind = str(kind)[:20].encode("unicode_escape").decode("ascii")
        article = "an" if kind[:1] in tuple("aeiou") else "a"
        raise UntrustedSchema(f"it holds {article} {kind} {shown} that memviz never writes")


# functions that reach outside the file, denied to every query
_ALWAYS_DENIED = frozenset({"load_extension", "readfile", "writefile", "edit",
                            "fts3_tokenizer"})
# and those that allocate what their arguments ask, which memviz's own reading never calls
_DENIED_FUNCTIONS = _ALWAYS_DENIED | {"printf", "format", "zeroblob", "randomblob",
                                      "concat", "concat_ws", "group_concat", "string_agg"}
_PRAGMAS = frozenset({"trusted_schema", "temp_store", "table_info", "table_xinfo",
                      "database_list"})


def _authorizer(user_sql: bool) -> Callable[[int, str | None, str | None, str | None,
                                             str | None], int]:
    def decide(action: int, arg1: str | None, arg2: str | None, database: str | None,
               source: str | None) -> int:
        if action in (sqlite3.SQLITE_READ, sqlite3.SQLITE_SELECT,
                      sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            name = (arg2 or "").lower()
            denied = _ALWAYS_DENIED if user_sql else _DENIED_FUNCTIONS
            return sqlite3.SQLITE_DENY if name in denied else sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_RECURSIVE:
            return sqlite3.SQLITE_OK if user_sql else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA:
            return sqlite3.SQLITE_OK if (arg1 or "").lower() in _PRAGMAS \
                else sqlite3.SQLITE_DENY
        if user_sql:  # the rows memviz built are there; the user's queries only read
            return sqlite3.SQLITE_DENY
        if action in (sqlite3.SQLITE_CREATE_TEMP_TABLE, sqlite3.SQLITE_CREATE_TEMP_VIEW,
                      sqlite3.SQLITE_CREATE_TEMP_INDEX, sqlite3.SQLITE_DROP_TEMP_TABLE,
                      sqlite3.SQLITE_DROP_TEMP_VIEW, sqlite3.SQLITE_DROP_TEMP_INDEX):
            return sqlite3.SQLITE_OK  # memviz's own rows beside the file (sql_access)
        if action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE):
            return sqlite3.SQLITE_OK if database == "temp" else sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_DENY  # attach, detach, writes to the file, triggers, ...
    return decide


def connect_read_only(path: Path | str) -> sqlite3.Connection:
    """The file opened read-only as untrusted input: its schema checked
    (UntrustedSchema, before any of its tables is read) and the authorizer on."""
    db = sqlite3.connect(read_only_uri(path), uri=True)
    try:
        db.execute("PRAGMA trusted_schema = OFF")
        check_schema(db)
    except BaseException:
        db.close()
        raise
    db.set_authorizer(_authorizer(user_sql=False))
    return db


def allow_user_queries(db: sqlite3.Connection) -> None:
    """From now on ``db`` runs a user's own queries (``memviz sql``): any function and
    recursion, but never attaching, loading or writing anything, temporary tables
    included."""
    db.set_authorizer(_authorizer(user_sql=True))
