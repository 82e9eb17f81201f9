"""``memviz``: the GUI by default; ``run`` headless; ``worker`` for the GUI and clusters."""

from __future__ import annotations

import argparse
import sys

from .. import __version__


def build_parser() -> argparse.ArgumentParser:
    from .run_cmd import add_cap_argument, add_spec_arguments

    parser = argparse.ArgumentParser(
        prog="memviz", description="Where the memory of a language model goes, measured live."
    )
    parser.add_argument("--version", action="version", version=f"memviz {__version__}")
    sub = parser.add_subparsers(dest="command")
    gui = sub.add_parser("gui", help="open the window (the default)")
    gui.add_argument("files", nargs="*", metavar="FILE.memviz", help="snapshots to open")
    gui.add_argument("--model", help="preselect this model")
    gui.add_argument("--smoke-test", metavar="PNG",
                     help="run two steps of the model in a real worker, save a screenshot, exit")
    run = sub.add_parser("run", help="run headless and print a summary")
    add_spec_arguments(run)
    add_cap_argument(run)
    run.add_argument("--connect", metavar="ADDR",
                     help="run on a worker waiting at ADDR (memviz worker --listen) instead "
                          "of starting one here; its token in MEMVIZ_TOKEN or --token-file")
    run.add_argument("--token-file", metavar="PATH", help="the worker's token (mode 600)")
    run.add_argument("--summary", metavar="JSON", help="write the summary here")
    run.add_argument("-o", "--output", metavar="FILE.memviz",
                     help="record the run to this snapshot file")
    run.add_argument("--force", action="store_true", help="overwrite the output file")
    from .export_cmd import add_arguments as add_export_arguments

    export = sub.add_parser("export", help="write a snapshot for PyTorch's memory tools")
    add_export_arguments(export)
    from .diff_cmd import add_arguments as add_diff_arguments

    add_diff_arguments(sub.add_parser("diff", help="compare two runs or snapshots"))
    from .compare_cmd import add_arguments as add_compare_arguments

    add_compare_arguments(sub.add_parser(
        "compare", help="technique sets side by side: table, JSON and an HTML report"))
    from .fit_cmd import add_arguments as add_fit_arguments

    add_fit_arguments(sub.add_parser(
        "fit", help="the largest batch under a memory limit, or the sets that make it fit"))
    from .record_cmd import add_arguments as add_record_arguments

    add_record_arguments(sub.add_parser(
        "record", help="profile your own program: memviz record -- python train.py ARGS"))
    from .techniques_cmd import add_arguments as add_techniques_arguments

    add_techniques_arguments(sub.add_parser("techniques", help="list the memory techniques"))
    sub.add_parser("worker", help="the measuring process (started by the GUI or CLI)",
                   add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # a Ctrl-C before a command installed its own handling
        print("\nmemviz: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        from ..worker.main import main as worker_main

        return worker_main(argv[1:])
    if not argv or argv[0].startswith("--smoke-test") or argv[0].endswith(
            (".memviz", ".pickle", ".pkl", ".json")):
        argv = ["gui", *argv]
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from .run_cmd import cmd_run

        return cmd_run(args)
    if args.command == "diff":
        from .diff_cmd import cmd_diff

        return cmd_diff(args)
    if args.command == "compare":
        from .compare_cmd import cmd_compare

        return cmd_compare(args)
    if args.command == "fit":
        from .fit_cmd import cmd_fit

        return cmd_fit(args)
    if args.command == "record":
        from .record_cmd import cmd_record

        return cmd_record(args)
    if args.command == "techniques":
        from .techniques_cmd import cmd_techniques

        return cmd_techniques(args)
    if args.command == "export":
        from .export_cmd import cmd_export

        return cmd_export(args)
    try:
        import pyqtgraph  # noqa: F401
        from PySide6 import QtWidgets  # noqa: F401
    except ImportError as exc:
        print(f"memviz: the window needs PySide6 and pyqtgraph ({exc}): install them with "
              "pip install 'memviz[gui]'. Without them, memviz run, record, export and "
              "memviz.track() work as they are", file=sys.stderr)
        return 2
    from ..gui.app import launch

    return launch(model=args.model, smoke_test=args.smoke_test, files=args.files)
