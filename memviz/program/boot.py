"""``python -m memviz.program.boot SCRIPT.py ARGS`` (or ``-m MODULE ARGS``): run a user's
program under ``memviz.track``, streaming to the ``memviz record`` that started it.

The program runs as it would on its own: ``__main__``, its own ``sys.argv``, its
output and its exit code. Only tracking is added.
"""

from __future__ import annotations

import os
import runpy
import shlex
import sys

from ..processes import RECORD_CONNECT_ENV as CONNECT_ENV
from ..processes import RECORD_DETAIL_ENV as DETAIL_ENV
from ..processes import RECORD_HZ_ENV as HZ_ENV
from ..processes import RECORD_LEVEL_ENV as LEVEL_ENV


def main(argv: list[str]) -> None:
    if not argv or (argv[0] == "-m" and len(argv) < 2):
        print("usage: python -m memviz.program.boot SCRIPT.py ARGS | -m MODULE ARGS",
              file=sys.stderr)
        raise SystemExit(2)
    from ..core.detail import DEFAULT as DEFAULT_DETAIL
    from ..protocol.token import TOKEN_ENV
    from .api import Tracking

    # popped: a program that starts Python processes of its own does not pass them on
    connect = os.environ.pop(CONNECT_ENV, None)
    token = os.environ.pop(TOKEN_ENV, None)
    level = os.environ.pop(LEVEL_ENV, "tensors+stacks")
    hz = float(os.environ.pop(HZ_ENV, "20"))
    detail = os.environ.pop(DETAIL_ENV, DEFAULT_DETAIL)
    tracking = Tracking(connect=connect, token=token, track=level, sample_hz=hz,
                        program=shlex.join(argv), scan_heap=False, detail=detail)
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        run = lambda: runpy.run_module(argv[1], run_name="__main__", alter_sys=True)  # noqa: E731
    else:
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
        run = lambda: runpy.run_path(argv[0], run_name="__main__")  # noqa: E731
    with tracking:
        run()


if __name__ == "__main__":
    main(sys.argv[1:])
