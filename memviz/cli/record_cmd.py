"""``memviz record [-o FILE] [--summary JSON] [--connect ADDR] -- python train.py ARGS``:
a user's own program, profiled as ``memviz run`` profiles memviz's runner.

The program's output passes through unchanged, memviz speaks on stderr only, and
the exit code is the program's. ``--connect`` streams it live to a window waiting
for it (File → Wait for a program…), with the token the window showed
(``MEMVIZ_TOKEN``).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from dataclasses import replace
from pathlib import Path

from ..core.categories import TRACK_LEVELS
from ..core.detail import DEFAULT as DEFAULT_DETAIL
from ..core.detail import parse_detail
from ..core.rank_files import launched_rank, rank_path
from ..core.spec import SpecError
from ..program.launchers import Launch

_PYTHON = re.compile(r"^python[0-9.]*(\.exe)?$")
# Python's own options that take a value (the rest are flags)
_VALUED = {"-X", "-W", "-Q"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", metavar="FILE.memviz",
                        help="record to this file (- for standard output; default: the "
                             "script's name.memviz)")
    parser.add_argument("--summary", metavar="JSON",
                        help="write the run's summary as JSON here (- for standard output)")
    parser.add_argument("--force", action="store_true", help="overwrite the output file")
    parser.add_argument("--track", default="tensors+stacks", choices=TRACK_LEVELS,
                        help="samples only, every tensor, or every tensor with its Python "
                             "stack on the detailed steps (the default)")
    parser.add_argument("--sample-hz", type=float, default=20.0, help="memory samples a second")
    parser.add_argument("--detail", default=DEFAULT_DETAIL, metavar="all|first:K,every:N",
                        help="which steps record every tensor op (the others only their "
                             "totals): all, or the first K and every Nth (default %(default)s)")
    parser.add_argument("--connect", metavar="ADDR",
                        help="stream live to a window waiting at ADDR (its token in "
                             "MEMVIZ_TOKEN)")
    parser.add_argument("--memory-cap", default="auto", metavar="SIZE|auto|none",
                        help="stop the program if its memory passes this (auto: 80%% of "
                             "the memory available at start, within a container's limit, "
                             "so the kernel's OOM killer never picks another program)")
    parser.add_argument("program_argv", nargs=argparse.REMAINDER, metavar="-- PROGRAM",
                        help="-- python train.py ARGS, or -- python -m package.module ARGS")


def program_command(argv: list[str]) -> Launch:
    """The command that runs ``argv`` under memviz.program.boot, how to name it, and
    the launcher whose ranks it follows (None for one process)."""
    from ..program import launchers

    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise SpecError("nothing to run: memviz record -- python train.py ARGS")
    if os.path.basename(argv[0]) == "torchrun":
        return launchers.follow(argv[:1], argv[1:], "torch.distributed.run")
    launchers.refuse_other(argv)
    python = sys.executable
    if _PYTHON.match(os.path.basename(argv[0])):
        # a bare "python" means this Python (the one memviz is installed in); a path names
        # another one, which must have memviz installed too
        python = argv[0] if os.sep in argv[0] else sys.executable
        argv = argv[1:]
    module = launchers.torch_launcher(argv)
    if module is not None:
        at = argv.index("-m")
        return launchers.follow([python, *argv[:at + 2]], argv[at + 2:], module)
    flags: list[str] = []
    while argv and argv[0].startswith("-") and argv[0] != "-m":
        if argv[0] == "-c":
            raise SpecError("memviz record runs a script or a module (-m), not -c code")
        flags.append(argv.pop(0))
        if flags[-1] in _VALUED and argv:
            flags.append(argv.pop(0))
    if not argv or (argv[0] == "-m" and len(argv) < 2):
        raise SpecError("give a script (train.py ARGS) or a module (-m package.module ARGS)")
    if argv[0] != "-m" and not Path(argv[0]).is_file():
        raise SpecError(f"no such script: {argv[0]}")
    name = " ".join(argv[1:2] if argv[0] == "-m" else argv[:1])
    return Launch([python, *flags, "-m", launchers.BOOT, *argv], name)


def cmd_record(args: argparse.Namespace) -> int:
    from ..session.memory_cap import parse_cap
    from ..session.program_start import start_program
    from .outputs import STDOUT, check_output

    try:
        parse_detail(args.detail)
        launch = program_command(list(args.program_argv))
        command, name, launcher = launch.command, launch.name, launch.launcher
        cap = parse_cap(args.memory_cap)
        output = args.output
        if output is None and args.connect is None:
            output = f"{Path(name.split()[0]).stem}.memviz"
        launched = launched_rank()
        if output not in (None, STDOUT) and launched is not None:
            output = str(rank_path(output, launched[0]))  # inside a rank: its own file
        check_output(output, overwrite=args.force)
        if launcher is not None:
            _check_rank_outputs(output, launch, overwrite=args.force)
            if cap.automatic and cap.bytes and launch.local_ranks:
                # the ranks share this machine: the automatic cap is the job's, split
                cap = replace(cap, bytes=cap.bytes // launch.local_ranks)
        check_output(args.summary)
        relay = _connect_to_window(args.connect) if args.connect else None
    except (SpecError, OSError, ValueError) as exc:
        print(f"memviz record: {exc}", file=sys.stderr)
        return 2
    # A Ctrl-C reaches the program itself (the same terminal): it ends as it would, and
    # what it streamed until then is kept here. memviz lets it pass with a handler that
    # does nothing, not SIG_IGN: an ignored signal is inherited, and a Python started
    # with SIGINT ignored never raises KeyboardInterrupt. (Ignored already, it stays so,
    # for the program too, as it would be without memviz.)
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _left_to_the_program)
    try:
        # started before the rest of memviz is imported: the program's own start (its
        # Python, torch) runs meanwhile
        started = start_program(command, track=args.track, sample_hz=args.sample_hz,
                                detail=args.detail,
                                stdout_to_stderr=STDOUT in (output, args.summary))
    except OSError as exc:
        signal.signal(signal.SIGINT, previous)
        print(f"memviz record: cannot start {command[0]}: {exc}", file=sys.stderr)
        return 2
    try:
        return _follow(args, started, launch, output, cap, relay)
    finally:
        signal.signal(signal.SIGINT, previous)


def _left_to_the_program(signum: int, frame: object) -> None:
    """SIGINT while a program is recorded: the program has it too, and ends as it
    chooses; memviz records that end."""


def _follow(args: argparse.Namespace, started, launch: Launch, output: str | None, cap,
            relay) -> int:
    """Record the started program to its end; its exit code."""
    from ..core.run import Run
    from ..core.spec import RunSpec
    from ..core.summary import build_summary
    from ..session.program import ProgramSession
    from .formatting import ranks_lines
    from .outputs import STDOUT, StagedOutput, shown, write_json

    command, name, launcher = launch.command, launch.name, launch.launcher
    program = " ".join(command[command.index("memviz.program.boot") + 1:])
    if launcher is not None:  # the job as the user launches it
        program = " ".join(a for a in args.program_argv if a != "--")
    spec = RunSpec(model=name, steps=0, track=args.track, sample_hz=args.sample_hz,
                   program=program, detail=args.detail)
    run = Run(spec)
    recorder = None
    target = StagedOutput(output, ".memviz", in_place=True)
    if output:
        from ..snapshot import Recorder

        try:
            recorder = Recorder(target.path, spec.to_dict(), overwrite=args.force)
        except OSError as exc:
            started.abandon()
            print(f"memviz record: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, FileExistsError) else 1
    session = ProgramSession(started, run, recorder=recorder, relay=relay, memory_cap=cap,
                             ranks=launcher is not None,
                             relay_for_rank=(lambda: _connect_to_window(args.connect))
                             if args.connect else None)
    session.start()
    session.wait()
    summary = build_summary(run)
    target.deliver()
    if args.summary:
        write_json(args.summary, summary)
    where = f" to {'standard output' if output == STDOUT else shown(output)}" if output else ""
    disk_failed = (run.error or {}).get("kind") == "disk"
    if disk_failed:  # one line: what failed, and what the file holds
        print(f"memviz record: {run.error['message']}; the file holds what was committed "
              f"before ({spec.steps_done(_steps_in_file(target.path))})", file=sys.stderr)
    else:
        print(f"memviz record: {run.state}, {spec.steps_done(len(run.steps))} recorded{where}",
              file=sys.stderr)
        if run.error and run.error["kind"] not in ("program",):
            print(f"memviz record: {run.error['message']}", file=sys.stderr)
    compiled = summary.get("compiled")
    if compiled and compiled.get("unseen"):  # the figures are the program's, not all of it
        print(f"memviz record: compiled with inductor: {compiled['unseen']}", file=sys.stderr)
    for line in ranks_lines(summary.get("distributed")):
        print(f"memviz record: {line}", file=sys.stderr)
    for rank in sorted(run.ranks):
        rank_run = run.ranks[rank]
        if rank_run.error:
            print(f"memviz record: rank {rank}: {rank_run.error['message']}", file=sys.stderr)
    code = session.exit_code
    if code is None:
        return 1
    if code == 0 and disk_failed:  # the program did its work; the recording did not
        return 1
    return 128 - code if code < 0 else code  # a signal's death as a shell reports it


def _steps_in_file(path: str | None) -> int:
    """The steps a recording that failed to write holds (0 where it cannot be read)."""
    import contextlib
    import sqlite3

    if not path or not os.path.isfile(path):
        return 0
    with contextlib.suppress(sqlite3.Error), \
            contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM steps").fetchone()[0])
    return 0


def _check_rank_outputs(output: str | None, launch: Launch, *, overwrite: bool) -> None:
    """Every rank records to a file of its own beside ``output``."""
    from .outputs import STDOUT, check_output

    if output == STDOUT:
        raise SpecError(f"{launch.launcher} starts several ranks, each recorded to a file "
                        "of its own: give -o FILE.memviz, not -o -")
    if output is not None:
        for rank in range(1, launch.local_ranks or 1):
            check_output(str(rank_path(output, rank)), overwrite=overwrite)


def _connect_to_window(where: str):
    from ..protocol import address, handshake
    from ..protocol.token import TOKEN_ENV
    from ..protocol.transport import Connection

    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise SpecError(f"--connect needs the window's token in {TOKEN_ENV}")
    conn = Connection(address.connect(address.parse(where), timeout=10))
    try:
        handshake.perform(conn, token, "program")
    except Exception:
        conn.close()
        raise
    return conn
