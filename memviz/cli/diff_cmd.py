"""``memviz diff A B``: two runs or snapshots compared at their tracked peaks."""

from __future__ import annotations

import argparse
import sys

from .formatting import human_bytes, table
from .outputs import bounded_int, shown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", help="a .memviz file or PyTorch snapshot (before)")
    parser.add_argument("b", help="a .memviz file or PyTorch snapshot (after)")
    parser.add_argument("--device", type=bounded_int(0, 9_999), metavar="N",
                        help="PyTorch snapshots of several GPUs: device N's traces "
                             "(default: each file's busiest)")
    parser.add_argument("--rank", type=bounded_int(0, 1 << 20), metavar="N",
                        help="a job recorded rank by rank: rank N of each (rank 0's file "
                             "brings the others beside it)")
    parser.add_argument("--summary", metavar="JSON",
                        help="write the comparison as JSON here (- for standard output)")
    parser.add_argument("--json", action="store_const", const="-", dest="summary",
                        help=argparse.SUPPRESS)  # the older spelling of --summary -
    parser.add_argument("--top", type=bounded_int(1, 10_000), default=15,
                        help="rows per table")


def _signed(n: int) -> str:
    return ("+" if n > 0 else "−" if n < 0 else "") + human_bytes(abs(n))


def cmd_diff(args: argparse.Namespace) -> int:
    from ..core.diff import diff
    from ..core.ranks import rank_of
    from ..snapshot import SnapshotError, open_run

    runs = []
    for path in (args.a, args.b):
        try:
            runs.append(rank_of(open_run(path, device=args.device), args.rank))
        except SnapshotError as exc:
            print(f"memviz: error: {exc}", file=sys.stderr)
            return 2
        except ValueError as exc:
            print(f"memviz: error: {shown(path)}: {exc}", file=sys.stderr)
            return 2
    a, b = runs
    result = diff(a, b)
    if args.summary:
        from .outputs import STDOUT, write_json

        write_json(args.summary, result)
        if args.summary == STDOUT:
            return 0
    ra, rb = result["a"], result["b"]
    print(f"A: {shown(args.a)} ({ra['label']})\nB: {shown(args.b)} ({rb['label']})\n")
    print(table(["", "A", "B", "change"], [
        ["peak RSS", human_bytes(ra["peak_rss_bytes"]), human_bytes(rb["peak_rss_bytes"]),
         _signed((rb["peak_rss_bytes"] or 0) - (ra["peak_rss_bytes"] or 0))],
        ["tracked peak", human_bytes(ra["tracked_peak_bytes"]),
         human_bytes(rb["tracked_peak_bytes"]),
         _signed(rb["tracked_peak_bytes"] - ra["tracked_peak_bytes"])],
    ]))
    for title, key in (("by category", "categories"), ("by module", "modules"),
                       ("by allocation site", "sites")):
        rows = [[r["name"][:70], human_bytes(r["a"]), human_bytes(r["b"]), _signed(r["delta"])]
                for r in result[key][: args.top] if r["delta"]]
        print(f"\nAt the tracked peak, {title} (what grew and shrank, largest first):")
        print(table([key[:-1] if key != "categories" else "category", "A", "B", "change"], rows)
              if rows else "  no change")
    return 0
