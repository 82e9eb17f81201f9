"""``memviz sql FILE.memviz QUERY``: SQL over a run's file, its allocations as rows
(``allocations``, ``allocations_named``, ``live_at_peak``; docs/snapshot.md)."""

from __future__ import annotations

import argparse
import csv
import sqlite3
import sys

from ..core.text import printable
from .formatting import table
from .outputs import shown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.memviz", help="a run's file")
    parser.add_argument("query", help="one SELECT (the file is opened read-only)")
    parser.add_argument("--csv", action="store_true", help="CSV with a header row instead "
                                                          "of a table")


def cmd_sql(args: argparse.Namespace) -> int:
    from ..snapshot import SnapshotError, connect_sql

    try:
        db = connect_sql(args.file)
    except SnapshotError as exc:
        print(f"memviz: error: {exc}", file=sys.stderr)
        return 2
    try:
        cursor = db.execute(args.query)
        headers = [d[0] for d in cursor.description or []]
        rows = cursor.fetchall()
    except sqlite3.Error as exc:
        reason = printable(str(exc), one_line=True)
        if reason.startswith("not authorized"):  # the untrusted file's authorizer said no
            reason = (f"memviz sql is read-only: it runs queries, and attaches, loads and "
                      f"writes nothing ({reason})")
        print(f"memviz: error: the query failed in {shown(args.file)}: {reason}",
              file=sys.stderr)
        return 2
    finally:
        db.close()
    cells = [[printable("" if v is None else str(v), one_line=True) for v in row]
             for row in rows]
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(headers)
        writer.writerows(cells)
    elif headers:
        print(table(headers, cells))
    return 0
