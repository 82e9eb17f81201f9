"""``memviz compare``: technique sets side by side, each in a fresh worker.

Progress goes to stderr as each set starts and ends; the table, the JSON
(``--summary``) and the offline HTML report (``-o``) come at the end. Ctrl-C
stops the running set and keeps what finished.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import sys
from pathlib import Path

from ..core.spec import SpecError
from .formatting import table
from .outputs import STDOUT, StagedOutput, check_output, human_stream, write_text
from .run_cmd import add_cap_argument, add_spec_arguments, spec_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    add_cap_argument(parser)
    parser.set_defaults(steps=6)
    parser.add_argument("--set", action="append", default=[], dest="sets",
                        metavar="NAME[:k=v],...",
                        help="a technique set, e.g. amp,checkpointing or lora:r=4,alpha=8 or "
                             "optimizer=sgd (repeatable; the baseline is added first)")
    parser.add_argument("--preset", choices=["each", "greedy"],
                        help="each: every applicable technique alone; greedy: add the best "
                             "next technique while it still lowers the peak")
    parser.add_argument("-o", "--output", metavar="REPORT.html",
                        help="write an HTML report (- for standard output)")
    parser.add_argument("--summary", metavar="JSON",
                        help="write one entry per set as JSON here (- for standard output)")
    parser.add_argument("--save", metavar="FILE.memviz",
                        help="save the whole comparison (every set's run) in one file")
    parser.add_argument("--force", action="store_true", help="overwrite the output files")


def cmd_compare(args: argparse.Namespace) -> int:
    warm = _start_warm_parent()
    try:
        return _compare(args, warm)
    finally:  # the comparison closes it when it ends; a command that ended before it
        if warm is not None and warm.proc.poll() is None:
            warm.close()


def _start_warm_parent():
    """The warm parent every set forks from, started first: its seconds of imports run
    beside the command's own start-up and checks (None where it cannot start: the
    comparison then starts its sets as it can)."""
    from ..session.warm import WarmStart

    try:
        return WarmStart(wait=False)
    except OSError:
        return None


def _compare(args: argparse.Namespace, warm) -> int:
    from ..compare import Comparison, each_alone, sets_from_texts
    from ..compare.results import TABLE_HEADERS, entries, table_rows
    from ..session.memory_cap import parse_cap

    try:
        base = spec_from_args(args)
        cap = None if args.memory_cap == "auto" else parse_cap(args.memory_cap, base.device)
        if args.preset and args.sets:
            raise SpecError("give --set or --preset, not both")
        sets = each_alone(base) if args.preset == "each" else sets_from_texts(args.sets)
        from ..compare.sets import runnable

        for candidate in sets:
            why = runnable(base, candidate)
            if why:
                raise SpecError(f"set {candidate.name!r}: {why}")
        for path in (args.output, args.summary, args.save):
            check_output(path, overwrite=args.force)
        if args.output == STDOUT == args.summary:
            raise SpecError("-o - and --summary - cannot both go to standard output")
    except SpecError as exc:
        print(f"memviz compare: {exc}", file=sys.stderr)
        return 2
    import tempfile

    folder = tempfile.TemporaryDirectory(prefix="memviz-compare-") if args.save else None
    comparison = Comparison(base, sets, greedy=args.preset == "greedy",
                            record_to=folder.name if folder else None, memory_cap=cap,
                            warm=warm)

    def started(result, number: int, planned: int) -> None:
        estimate = result.estimate
        guess = "" if not estimate else (
            f", {'simulated' if estimate.get('source') == 'simulation' else 'predicted'} peak "
            f"{estimate['peak_bytes'] / 2**20:.1f} MiB")
        print(f"[{number}/{planned}] {result.name}: running{guess}", file=sys.stderr,
              flush=True)

    def simulating(names: str) -> None:
        print(f"simulating on fake tensors, for the predictions: {names}", file=sys.stderr,
              flush=True)

    presses = 0

    def pressed(_signum, _frame) -> None:
        """The first Ctrl-C stops the running set at its next phase and starts no more;
        the second ends it at once."""
        nonlocal presses
        presses += 1
        if presses == 1:
            print("\nmemviz compare: stopping at the next phase (Ctrl-C again to kill the "
                  "running set)", file=sys.stderr, flush=True)
            comparison.cancel()
        else:
            comparison.kill()

    previous = signal.signal(signal.SIGINT, pressed)
    try:
        results = comparison.run_all(started, on_simulating=simulating)
    finally:
        signal.signal(signal.SIGINT, previous)
    if presses:
        print("memviz compare: stopped; the sets that finished are reported",
              file=sys.stderr)
    items = entries(results)
    print(table(TABLE_HEADERS, table_rows(items)), file=human_stream(args.output, args.summary))
    failed = [e for e in items if e["state"] != "finished"]
    for e in failed:
        print(f"{e['name']}: {e['state']}: {e['error'] or ''}", file=sys.stderr)
    try:
        _write_outputs(args, comparison, base, results, items)
    except (OSError, sqlite3.Error) as exc:  # a full disk: one line, nothing half-written
        reason = getattr(exc, "strerror", None) or str(exc)
        print(f"memviz compare: could not write its outputs: {reason}", file=sys.stderr)
        return 1
    finally:
        if folder is not None:
            folder.cleanup()
    if presses:
        return 130
    return 1 if failed else 0


def _write_outputs(args: argparse.Namespace, comparison, base, results, items) -> None:
    """The summary, the HTML report and the saved comparison, each whole or not at all."""
    from ..compare.html_report import write as write_html
    if args.summary:
        write_text(args.summary, json.dumps({"base": base.to_dict(), "sets": items}, indent=1,
                                            default=str) + "\n")
    if args.output:
        report = StagedOutput(args.output, ".html")
        try:
            write_html(Path(report.path), base.label(), results, items)
            report.deliver()
        finally:
            report.discard()
    if args.save:
        from ..compare import save_comparison

        save_comparison(comparison, args.save, overwrite=args.force)
