"""``memviz export FILE --to KIND -o OUT``: a snapshot in a format other tools read.

FILE may be a .memviz file or a PyTorch memory snapshot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .outputs import bounded_int

KINDS = ("torch-pickle", "torch-json", "chrome-trace", "csv", "html", "folded")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a .memviz file or PyTorch snapshot")
    parser.add_argument("--device", type=bounded_int(0, 9_999), metavar="N",
                        help="a PyTorch snapshot of several GPUs: device N's trace "
                             "(default: the busiest)")
    parser.add_argument("--to", required=True, choices=KINDS, help="the format to write")
    parser.add_argument("-o", "--output", required=True,
                        help="where to write it (a folder for csv; - for standard output)")
    parser.add_argument("--force", action="store_true", help="overwrite the output file")
    parser.add_argument("--at", metavar="SECONDS|peak", default="peak",
                        help="folded: the moment whose live bytes to write, in seconds on "
                             "the run's clock (default: the tracked peak)")


def _moment(text: str) -> float | None:
    """``--at``: seconds, or None for the peak."""
    from ..core.spec import SpecError

    if text == "peak":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise SpecError(f"--at is 'peak' or a number of seconds, not {text!r}")
    return value


def cmd_export(args: argparse.Namespace) -> int:
    from ..core.spec import SpecError
    from ..snapshot import SnapshotError, exports, open_run
    from ..snapshot.torch_export import write
    from .outputs import STDOUT, StagedOutput, check_output, shown

    try:
        at = _moment(args.at)
        if args.output == STDOUT and args.to == "csv":
            raise SpecError("csv writes a folder of files: give -o FOLDER, not -")
        check_output(args.output, overwrite=args.force, folder=args.to == "csv")
        run = open_run(args.file, device=args.device)
    except (SnapshotError, SpecError) as exc:
        print(f"memviz: error: {exc}", file=sys.stderr)
        return 2
    target = StagedOutput(args.output, "." + args.to)
    out = Path(target.path)
    try:
        if args.to == "chrome-trace":
            exports.write_chrome_trace(run, out)
        elif args.to == "csv":
            exports.write_csv(run, out)
        elif args.to == "folded":
            from ..snapshot.folded import peak_time, write_folded

            write_folded(run, out, peak_time(run) if at is None else at)
        elif args.to == "html":
            from ..snapshot import html_report

            html_report.write(run, out)
        else:
            write(run, out, args.to)
        target.deliver()
    except OSError as exc:  # a full disk, a file too large: the snapshot read is untouched
        reason = exc.strerror or str(exc)
        print(f"memviz: error: could not write {shown(args.output)}: {reason}",
              file=sys.stderr)
        return 1
    finally:
        target.discard()
    where = "standard output" if args.output == STDOUT else shown(args.output)
    print(f"wrote {where} ({args.to}, {len(run.tensors):,} allocations)",
          file=sys.stderr if args.output == STDOUT else sys.stdout)
    return 0
