"""Where a shared token may come from: the environment or a file only its owner reads.

Never the command line: ``/proc/PID/cmdline`` is readable by every user.
"""

from __future__ import annotations

import os
import stat

TOKEN_ENV = "MEMVIZ_TOKEN"


class TokenError(ValueError):
    pass


def read_token_file(path: str) -> str:
    """The token in ``path``, if the file is the caller's own and private to them."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise TokenError(f"cannot read the token file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise TokenError(f"the token file {path} is not a regular file")
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise TokenError(f"the token file {path} belongs to another user")
        if info.st_mode & 0o077:
            raise TokenError(f"the token file {path} is readable by others "
                             f"(mode {stat.S_IMODE(info.st_mode):o}): chmod 600 {path}")
        text = handle.read(4096).decode("utf-8", "replace").strip()
    if not text:
        raise TokenError(f"the token file {path} is empty")
    return text


def token_from(token_file: str | None) -> str:
    """The token from ``token_file`` if given, else from MEMVIZ_TOKEN ('' if neither)."""
    if token_file:
        return read_token_file(token_file)
    return os.environ.get(TOKEN_ENV, "")
