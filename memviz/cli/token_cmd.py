"""``memviz token``: a new token for a listening worker and its controller, too random
to guess (256 bits), printed or written to a file only its owner can read."""

from __future__ import annotations

import argparse
import os
import sys

from .outputs import shown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--write", metavar="PATH",
                        help="write the token to this file (mode 600) instead of printing it")
    parser.add_argument("--force", action="store_true", help="overwrite the file")


def cmd_token(args: argparse.Namespace) -> int:
    from ..protocol.token import new_token

    token = new_token()
    if not args.write:
        print(token)
        return 0
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if args.force else os.O_EXCL)
    try:
        fd = os.open(args.write, flags | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        print(f"memviz token: {shown(args.write)} exists (use --force to overwrite it)",
              file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"memviz token: cannot write {shown(args.write)}: {exc.strerror}",
              file=sys.stderr)
        return 2
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an existing file keeps no wider mode
        handle.write(token + "\n")
    print(f"wrote a new token to {shown(args.write)} (mode 600): pass it to "
          "`memviz worker --listen … --token-file` and to the controller", file=sys.stderr)
    return 0
