"""``memviz attach PID -o FILE.memviz``: track a Python program that is already running,
from now on, then let it go on untouched.

The program gets ``memviz.start(...)`` run inside it (``program/inject.py``): its
models and optimizers are found on its heap, what they held before is recorded as
existing (by category: weights, gradients, optimizer state), and every allocation
from the next bytecode on is tracked, steps counted at its optimizer's steps. At the
end (``--steps``, ``--seconds``, Ctrl-C, or the program's own exit) ``memviz.stop()``
is run inside it the same way, which finishes the file.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

from .outputs import check_output, shown

POLL_S = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pid", type=int, help="a running Python process of yours")
    parser.add_argument("-o", "--output", required=True, metavar="FILE.memviz",
                        help="where the recording goes")
    parser.add_argument("--force", action="store_true", help="overwrite the output file")
    parser.add_argument("--track", choices=("tensors", "tensors+stacks"), default="tensors+stacks",
                        help="every tensor, or every tensor with its Python stack")
    until = parser.add_mutually_exclusive_group()
    until.add_argument("--steps", type=int, metavar="N",
                       help="detach once N steps are recorded (default: on Ctrl-C or when "
                            "the program exits)")
    until.add_argument("--seconds", type=float, metavar="S", help="detach after S seconds")


def cmd_attach(args: argparse.Namespace) -> int:
    from ..core.spec import SpecError
    from ..program.attach import Attachment
    from ..program.inject import InjectError

    output = Path(args.output).resolve()
    try:
        check_output(str(output), overwrite=args.force)
        attachment = Attachment(args.pid, output=output, level=args.track)
    except (InjectError, SpecError) as exc:
        return _error(exc, 2)
    try:
        try:
            attachment.start()
        except InjectError as exc:
            return _error(exc, 2)
        print(f"memviz: attached to {args.pid} ({attachment.command[:80]}): tracking from "
              "now on; what it held before is recorded as existing. Recording to "
              f"{shown(str(output))}", file=sys.stderr)
        if _wait_for_the_end(args, output, attachment) == "exited":
            print(f"memviz: process {args.pid} exited; its recording was finished as it did",
                  file=sys.stderr)
        else:
            try:
                attachment.stop()
            except InjectError as exc:
                return _error(f"could not detach: {exc}", 1)
    finally:
        attachment.close()
    return _report(output, args.pid)


def _error(why: object, code: int) -> int:
    print(f"memviz: error: {why}", file=sys.stderr)
    return code


def _steps_recorded(output: Path) -> int:
    try:
        db = sqlite3.connect(f"{output.as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            return int(db.execute("SELECT count(*) FROM steps").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _wait_for_the_end(args: argparse.Namespace, output: Path, attachment) -> str:
    """"exited", "done" (steps or seconds reached) or "interrupted"."""
    deadline = time.monotonic() + args.seconds if args.seconds is not None else None
    try:
        while True:
            if not attachment.alive():
                return "exited"
            if deadline is not None and time.monotonic() >= deadline:
                return "done"
            if args.steps is not None and _steps_recorded(output) >= args.steps:
                return "done"
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        return "interrupted"


def _report(output: Path, pid: int) -> int:
    from ..core.summary import build_summary
    from ..snapshot import SnapshotError, open_run
    from .formatting import human_bytes

    try:
        run = open_run(output)
    except SnapshotError as exc:
        print(f"memviz: error: the recording of {pid} cannot be read: {exc}", file=sys.stderr)
        return 1
    summary = build_summary(run)
    peak = summary["peak"]["tracked_bytes"]
    parts = ", ".join(f"{name.replace('_', ' ')} {human_bytes(b)}" for name, b in
                      sorted((summary["peak_by_category"] or {}).items(),
                             key=lambda kv: -kv[1]) if b)
    print(f"recorded {len(run.steps)} steps of process {pid} to {shown(str(output))}; "
          f"tracked peak {human_bytes(peak) if peak is not None else '—'}"
          + (f" ({parts})" if parts else ""))
    return 0
