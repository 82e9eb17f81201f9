"""Where a shared token may come from: the environment or a file only its owner reads.

Never the command line: ``/proc/PID/cmdline`` is readable by every user.
"""

from __future__ import annotations

import math
import os
import secrets
import stat
import string

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


MIN_BITS = 128


def estimated_bits(token: str) -> float:
    """An upper estimate of the randomness in ``token``, for tokens that look machine
    made: hex digits count 4 bits each; otherwise a token must mix lower case, upper
    case and digits (a random one always does), and each character counts the bits of
    the classes it draws from. Words, phrases and repeats ("tttt…") count as none: a
    person's choice is far less random than its length says."""
    if len(set(token)) < 8:
        return 0.0
    if all(c in string.hexdigits for c in token):
        return 4.0 * len(token)
    classes = [string.ascii_lowercase, string.ascii_uppercase, string.digits]
    present = [cls for cls in classes if any(c in cls for c in token)]
    if len(present) < len(classes):
        return 0.0
    alphabet = sum(len(cls) for cls in present) + (
        32 if any(not c.isalnum() for c in token) else 0)
    return len(token) * math.log2(alphabet)


def check_strength(token: str) -> str:
    """``token`` if it is strong enough to be safe, else a TokenError saying why. Whoever
    sees one handshake (a stranger listening where a worker was) can test guesses
    offline at millions a second, so a token must be too random to guess."""
    if estimated_bits(token) < MIN_BITS:
        raise TokenError(f"the token is too weak: whoever sees one handshake could guess it "
                         f"offline; use at least {MIN_BITS} random bits, as `memviz token` "
                         "makes (it prints one, or writes a private file with --write)")
    return token


def new_token() -> str:
    """A token of 256 random bits, in hex (so its strength is plain to see)."""
    return secrets.token_hex(32)


def token_from(token_file: str | None) -> str:
    """The token from ``token_file`` if given, else from MEMVIZ_TOKEN ('' if neither);
    one too weak to be safe is refused (TokenError)."""
    token = read_token_file(token_file) if token_file else os.environ.get(TOKEN_ENV, "")
    return check_strength(token) if token else ""
