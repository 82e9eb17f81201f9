"""``memviz``: the GUI by default; ``run`` headless; ``worker`` for the GUI and clusters."""

from __future__ import annotations

import argparse
import sys

from ..version import DISTRIBUTION, __version__


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's default in --help (where it has one), the examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or not action.option_strings or \
                action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


EXAMPLES = {
    "memviz": "memviz                                   # the window\n"
              "  memviz run.memviz                        # open a recording\n"
              "  memviz run --model gpt2-tiny --steps 3   # headless",
    "gui": "memviz gui --model llama-tiny run.memviz",
    "run": "memviz run --model gpt2-tiny --steps 3 --technique checkpointing "
           "-o run.memviz --summary -",
    "export": "memviz export run.memviz --to torch-pickle -o run.pickle",
    "diff": "memviz diff baseline.memviz checkpointing.memviz --top 10",
    "compare": "memviz compare --model gpt2-tiny --steps 2 --set amp --set lora "
               "-o report.html",
    "fit": "memviz fit --model llama-tiny --limit 2GiB --search batch",
    "record": "memviz record -o train.memviz -- python train.py --epochs 1",
    "techniques": "memviz techniques --model gpt2-tiny",
    "token": "memviz token --write ~/.memviz-token",
    "attach": "memviz attach 12345 -o train.memviz --steps 3",
    "sql": "memviz sql run.memviz \"SELECT module, sum(nbytes) FROM live_at_peak "
           "GROUP BY module ORDER BY 2 DESC LIMIT 5\"",
}


def _parser(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    return sub.add_parser(name, formatter_class=HelpFormatter, allow_abbrev=False,
                          epilog=f"example:\n  {EXAMPLES[name]}", **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from .run_cmd import add_cap_argument, add_spec_arguments

    parser = argparse.ArgumentParser(
        prog="memviz", description="Where the memory of a language model goes, measured live.",
        formatter_class=HelpFormatter, allow_abbrev=False,
        epilog=f"examples:\n  {EXAMPLES['memviz']}")
    parser.add_argument("--version", action="version", version=f"memviz {__version__}")
    sub = parser.add_subparsers(dest="command")
    gui = _parser(sub, "gui", help="open the window (the default)")
    gui.add_argument("files", nargs="*", metavar="FILE.memviz", help="snapshots to open")
    gui.add_argument("--model", help="preselect this model")
    gui.add_argument("--smoke-test", metavar="PNG",
                     help="run two steps of the model in a real worker, save a screenshot, exit")
    run = _parser(sub, "run", help="run headless and print a summary")
    add_spec_arguments(run)
    add_cap_argument(run)
    run.add_argument("--connect", metavar="ADDR",
                     help="run on a worker waiting at ADDR (memviz worker --listen) instead "
                          "of starting one here; its token in MEMVIZ_TOKEN or --token-file")
    run.add_argument("--token-file", metavar="PATH", help="the worker's token (mode 600)")
    run.add_argument("--summary", metavar="JSON",
                     help="write the summary as JSON here (- for standard output)")
    run.add_argument("-o", "--output", metavar="FILE.memviz",
                     help="record the run to this snapshot file (- for standard output)")
    run.add_argument("--force", action="store_true", help="overwrite the output file")
    from .export_cmd import add_arguments as add_export_arguments

    export = _parser(sub, "export", help="write a snapshot for PyTorch's memory tools")
    add_export_arguments(export)
    from .diff_cmd import add_arguments as add_diff_arguments

    add_diff_arguments(_parser(sub, "diff", help="compare two runs or snapshots"))
    from .compare_cmd import add_arguments as add_compare_arguments

    add_compare_arguments(_parser(
        sub, "compare", help="technique sets side by side: table, JSON and an HTML report"))
    from .fit_cmd import add_arguments as add_fit_arguments

    add_fit_arguments(_parser(
        sub, "fit", help="the largest batch under a memory limit, or the sets that make it fit"))
    from .record_cmd import add_arguments as add_record_arguments

    add_record_arguments(_parser(
        sub, "record", help="profile your own program: memviz record -- python train.py ARGS"))
    from .techniques_cmd import add_arguments as add_techniques_arguments

    add_techniques_arguments(_parser(sub, "techniques", help="list the memory techniques"))
    from .token_cmd import add_arguments as add_token_arguments

    add_token_arguments(_parser(sub, "token", help="make a token for a listening worker"))
    from .sql_cmd import add_arguments as add_sql_arguments

    add_sql_arguments(_parser(sub, "sql", help="SQL over a run's file, every allocation a row"))
    from .attach_cmd import add_arguments as add_attach_arguments

    add_attach_arguments(_parser(
        sub, "attach", help="track a Python program already running, by its process id"))
    sub.add_parser("worker", help="the measuring process (started by the GUI or CLI)",
                   add_help=False)
    return parser


def no_display_reason() -> str | None:
    """Why Qt would find no display (it aborts the process then), or None. Only on
    Linux and the BSDs, and only when no platform was chosen that needs none."""
    import os

    if not sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return None
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith(("xcb", "wayland")):
        return None  # offscreen, vnc, eglfs, linuxfb … need no X or Wayland display
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return "no display (neither DISPLAY nor WAYLAND_DISPLAY is set)"


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # a Ctrl-C before a command installed its own handling
        print("\nmemviz: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        from ..worker.entry import main as worker_main

        return worker_main(argv[1:])
    if not argv or argv[0].startswith("--smoke-test") or argv[0].endswith(
            (".memviz", ".pickle", ".pkl", ".json")):
        argv = ["gui", *argv]
    from ..protocol.token import ON_THE_COMMAND_LINE, token_on_the_command_line

    if token_on_the_command_line(argv):  # refused before argparse could echo it
        print(f"memviz: error: {ON_THE_COMMAND_LINE}", file=sys.stderr)
        return 2
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
    if args.command == "token":
        from .token_cmd import cmd_token

        return cmd_token(args)
    if args.command == "attach":
        from .attach_cmd import cmd_attach

        return cmd_attach(args)
    if args.command == "sql":
        from .sql_cmd import cmd_sql

        return cmd_sql(args)
    if args.command == "export":
        from .export_cmd import cmd_export

        return cmd_export(args)
    try:
        import pyqtgraph  # noqa: F401
        from PySide6 import QtWidgets  # noqa: F401
    except ImportError as exc:
        print(f"memviz: the window needs PySide6 and pyqtgraph ({exc}): install them with "
              f"pip install '{DISTRIBUTION}[gui]'. Without them, memviz run, record, export "
              "and memviz.track() work as they are", file=sys.stderr)
        return 2
    reason = no_display_reason()
    if reason:
        print(f"memviz: {reason}: no window can open here. Run headless instead "
              "(memviz run, memviz export FILE --to html -o report.html, memviz diff A B), "
              "or set QT_QPA_PLATFORM=offscreen", file=sys.stderr)
        return 2
    from ..gui.app import launch

    return launch(model=args.model, smoke_test=args.smoke_test, files=args.files)
