"""Launchers that start a program once a rank, and how ``memviz record`` follows them.

``torchrun`` (and ``python -m torch.distributed.run`` or the older
``torch.distributed.launch``) is run as the user wrote it, with one change: each
rank runs ``python -m memviz.program.boot SCRIPT ARGS`` where it would have run
``python SCRIPT ARGS``, so every rank is tracked in its own process and streams
to the one ``memviz record``. The launcher's own arguments are read by torch's own
parser, so every option it takes is understood as it understands it.

Launchers whose ranks cannot be followed this way are named in one line, with
what to run instead: memviz inside each rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..core.spec import SpecError

TORCH_LAUNCHERS = ("torch.distributed.run", "torch.distributed.launch")
BOOT = "memviz.program.boot"
INSIDE = "memviz record -o run.memviz -- python train.py"
# launchers of other projects: memviz runs inside their ranks instead
OTHER_LAUNCHERS = {"deepspeed": "deepspeed", "accelerate": "accelerate launch",
                   "mpirun": "mpirun", "mpiexec": "mpiexec", "srun": "srun"}


@dataclass
class Launch:
    command: list[str]  # what to run: the program (or each rank) under memviz's boot
    name: str  # the script (or module) the program (every rank) runs
    launcher: str | None = None  # e.g. "torchrun"; None: one process
    local_ranks: int | None = None  # how many ranks the launcher starts here, when it says


def torch_launcher(python_argv: list[str]) -> str | None:
    """The torch launcher module that ``python [flags] -m MODULE ...`` runs, if any."""
    at = 0
    while at < len(python_argv) and python_argv[at].startswith("-"):
        if python_argv[at] == "-m":
            found = python_argv[at + 1] if at + 1 < len(python_argv) else None
            return found if found in TORCH_LAUNCHERS else None
        at += 2 if python_argv[at] in ("-X", "-W") else 1
    return None


def refuse_other(argv: list[str]) -> None:
    """One line for a launcher memviz does not follow."""
    name = os.path.basename(argv[0]) if argv else ""
    if name in OTHER_LAUNCHERS:
        raise SpecError(f"cannot follow {OTHER_LAUNCHERS[name]}'s ranks: run "
                        f"memviz inside each rank instead ({OTHER_LAUNCHERS[name]} ... "
                        f"{INSIDE}, or memviz.track() in the script)")


def follow(prefix: list[str], launcher_args: list[str], module: str) -> Launch:
    """The command that runs the torch launcher ``prefix`` (``[python, -m, module]`` or
    ``[torchrun]``) with ``launcher_args``, each rank under memviz's boot."""
    from importlib import import_module

    parser = import_module(module).get_args_parser()
    shown = "torchrun" if module == "torch.distributed.run" else f"python -m {module}"
    try:
        args = parser.parse_args(launcher_args)
    except SystemExit:  # the parser said why on standard error
        raise SpecError(f"{shown} could not read its arguments (above)") from None
    if args.no_python:
        raise SpecError(f"cannot follow {shown} --no-python (its ranks are "
                        f"not Python): run memviz inside each rank instead "
                        f"({shown} --no-python {INSIDE})")
    if getattr(args, "run_path", False):
        raise SpecError(f"cannot follow {shown} --run-path (its ranks run "
                        f"inside the launcher's own Python): leave out --run-path")
    script_at = len(launcher_args) - len(args.training_script_args) - 1
    options, script = launcher_args[:script_at], args.training_script
    if args.module:  # the rank runs ``python -m memviz.program.boot -m MODULE ARGS``
        ranks_run = [BOOT, "-m", script]
        name = script
    else:
        if not os.path.isfile(script):
            raise SpecError(f"no such script: {script}")
        ranks_run = ["-m", BOOT, script]
        name = script
    nproc = str(args.nproc_per_node)
    nnodes = str(args.nnodes)
    return Launch([*prefix, *options, *ranks_run, *args.training_script_args], name, shown,
                  int(nproc) if nproc.isdigit() and nnodes in ("1", "1:1") else None)
