"""``memviz worker``: its command line. The worker proper is in ``main.py`` (a run
over a connection), ``zygote.py`` (the warm parent) and ``run_peer`` (a rank)."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from ..protocol import address
from ..protocol.token import (
    ON_THE_COMMAND_LINE,
    TokenError,
    token_from,
    token_on_the_command_line,
)
from . import lean_imports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memviz worker", allow_abbrev=False)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--rank", type=int, help=argparse.SUPPRESS)  # a distributed run's peer
    where.add_argument("--connect", help="controller address (unix:/path or tcp:host:port)")
    where.add_argument("--listen", nargs="?", const=address.PRIVATE, metavar="ADDR",
                       help="wait for a controller here; alone, at a Unix socket in a folder "
                            "only you can enter (printed; forward it with ssh -L for remote "
                            "use), or tcp:127.0.0.1:PORT")
    parser.add_argument("--zygote", action="store_true", help=argparse.SUPPRESS)  # warm parent
    parser.add_argument("--token-file", metavar="PATH",
                        help="read the shared secret from this file (mode 600); "
                             "default: the MEMVIZ_TOKEN environment variable")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow --listen on a non-loopback address")
    parser.add_argument("--world-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--master-port", type=int, help=argparse.SUPPRESS)
    if token_on_the_command_line(argv):  # refused before argparse could echo it
        parser.error(ON_THE_COMMAND_LINE)
    args = parser.parse_args(argv)
    for where_to in (args.connect, args.listen):
        if where_to is None or where_to == address.PRIVATE:
            continue
        try:
            parsed = address.parse(where_to)
        except address.AddressError as exc:
            parser.error(str(exc))
        if args.listen and not args.allow_remote and not parsed.is_loopback:
            parser.error(f"{where_to} is not a loopback address: anyone who can reach it "
                         "could try the token; pass --allow-remote if that is meant")
    lean_imports.hide_technique_libraries()
    if args.connect or args.rank is not None:
        # a Ctrl-C in the terminal reaches the whole process group: the controller
        # decides how its worker stops (a clean stop, then a kill if it lingers)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a controller spawns its worker with SIGINT blocked (session.spawn): now that it
    # has its disposition, a Ctrl-C left pending from the spawn is discarded
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if args.rank is not None:
        from .main import run_peer

        return run_peer(args.rank, args.world_size, args.master_port)
    try:
        token = token_from(args.token_file)
    except TokenError as exc:
        parser.error(str(exc))
    if not token:
        parser.error("a token is required: set MEMVIZ_TOKEN or pass --token-file")
    if args.zygote:
        from .zygote import serve

        return _exit_now(serve(args.connect, token))
    from .main import serve_controller

    return _exit_now(serve_controller(args, token))


def _exit_now(code: int) -> int:
    """The run (or the warm parent's service) is over and all it had to say is sent and
    closed: the interpreter's own teardown (most of a second with torch loaded, freeing
    what the process is about to give back anyway) is skipped, as a forked worker skips
    it. Not under a profiler or a tracer (cProfile, coverage): they write what they
    found in that teardown."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
