"""Where a shared token may come from: the environment or a file only its owner reads.

Never the command line: ``/proc/PID/cmdline`` is readable by every user.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat

TOKEN_ENV = "MEMVIZ_TOKEN"


class TokenError(ValueError):
    pass


def read_token_file(path: str) -> str:
    """The token in ``path``, if the file is the caller's own and private to them. The
    path is never repeated in an error: the commonest mistake is the token itself
    passed where its file's path belongs."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise TokenError(f"cannot read the file given to --token-file ({exc.strerror}): it "
                         "takes the path of a file holding the token (mode 600), never the "
                         "token itself") from None
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


PREFIX = "memviz-"
RANDOM_BYTES = 32
_FORMAT = re.compile(rf"^{PREFIX}([0-9a-f]{{{2 * RANDOM_BYTES}}})-([0-9a-f]{{8}})$")
MAKE_ONE = "`memviz token --write ~/.memviz-token` makes one (or `memviz token` prints one)"


def _checksum(body: str) -> str:
    return hashlib.sha256(f"{PREFIX}{body}".encode()).hexdigest()[:8]


def is_memviz_token(token: str) -> bool:
    """Whether ``token`` is one ``new_token`` made: the prefix, 256 bits in hex, and a
    checksum over them. No test can measure the randomness of a string a person
    typed (``Password123Password123`` and ``0123456789abcdef…`` pass any count of
    character classes), so only what memviz made is taken; the checksum catches a
    token cut or mistyped, and a body that uses few of the hex digits is a pattern."""
    match = _FORMAT.match(token)
    if match is None:
        return False
    body, checksum = match[1], match[2]
    return hmac.compare_digest(_checksum(body), checksum) and len(set(body)) >= 12


def check_strength(token: str) -> str:
    """``token`` if memviz made it, else a TokenError saying why and how to get one.
    Whoever sees one handshake (a stranger listening where a worker was) can test
    guesses offline at millions a second, so a token must be too random to guess."""
    if not is_memviz_token(token):
        raise TokenError("the token is too weak to trust: it is not one memviz made "
                         "(a chosen or hand-made token can be guessed offline from one "
                         f"handshake); {MAKE_ONE}")
    return token


def new_token() -> str:
    """256 random bits in hex, with memviz's prefix and a checksum."""
    body = secrets.token_hex(RANDOM_BYTES)
    return f"{PREFIX}{body}-{_checksum(body)}"


ON_THE_COMMAND_LINE = ("a token on the command line is readable by every user of this "
                       "machine: put it in MEMVIZ_TOKEN or a file for --token-file (mode 600)")


def token_on_the_command_line(argv: list[str]) -> bool:
    """Whether ``argv`` passes a token itself (``--token``, or any abbreviation or
    misspelling such as ``--tok`` or ``--token=…``; ``--token-file`` is fine). Checked
    before argument parsing, whose errors repeat what they did not recognise."""
    for arg in argv:
        if arg == "--":
            return False
        name = arg.split("=", 1)[0]
        if name.startswith("--tok") and name != "--token-file":
            return True
    return False


def token_from(token_file: str | None) -> str:
    """The token from ``token_file`` if given, else from MEMVIZ_TOKEN ('' if neither);
    one too weak to be safe is refused (TokenError)."""
    token = read_token_file(token_file) if token_file else os.environ.get(TOKEN_ENV, "")
    return check_strength(token) if token else ""
