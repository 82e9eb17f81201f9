"""Output paths checked before anything runs, so a typo never costs a whole run."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from ..core.spec import SpecError
from ..core.text import printable


def check_output(path: str | None, *, overwrite: bool = True, folder: bool = False) -> None:
    """Refuse ``path`` now if writing it later would fail: its folder is missing or
    not writable, it is a folder (or, with ``folder``, a file), or it exists and may
    not be overwritten."""
    if not path or path == STDOUT:
        return
    target = Path(path).expanduser()
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise SpecError(f"cannot write {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SpecError(f"cannot write {path}: the folder {parent} is not writable")
    if target.exists():
        if target.is_dir() != folder:
            what = "a folder" if target.is_dir() else "a file"
            raise SpecError(f"cannot write {path}: it is {what}")
        if not overwrite:
            raise SpecError(f"{path} exists (use --force to overwrite it)")


STDOUT = "-"  # -o - / --summary -: standard output


def bounded_int(low: int, high: int):
    """An argparse type: an integer from ``low`` to ``high``, else a one-line error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, not {value}")
        return value
    return parse


def shown(path: str) -> str:
    """A path as it may be printed: escape sequences and other control characters in
    a file's name never reach the terminal."""
    return printable(str(path), one_line=True)


def human_stream(*paths: str | None) -> TextIO:
    """Where the human-readable report goes: standard error when standard output
    carries a file or JSON (``-o -``, ``--summary -``), so a pipe gets only that."""
    return sys.stderr if STDOUT in paths else sys.stdout


def write_text(path: str, text: str) -> None:
    if path == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    staged = StagedOutput(path, ".txt")
    try:
        Path(staged.path).write_text(text, encoding="utf-8")
        staged.deliver()
    finally:
        staged.discard()


def write_json(path: str, data: Any, indent: int = 2) -> None:
    write_text(path, json.dumps(data, indent=indent) + "\n")


class StagedOutput:
    """A file (or a folder) a command writes by path, whole or not at all: written under
    a private name beside its final place, then moved there by ``deliver`` (a rename,
    so a reader never sees half of it); one that is to end on standard output is
    written to a private temporary folder, then copied out. ``discard`` removes what
    is left of a write that failed (a full disk): nothing half-written stays under
    the final name, and an earlier file of that name is untouched until the new one
    is whole.

    ``in_place``: a recording, written where it belongs from its first commit so that
    a crash leaves a readable file under its name (only standard output is staged)."""

    def __init__(self, path: str | None, suffix: str, *, in_place: bool = False) -> None:
        self.to_stdout = path == STDOUT
        self._scratch: str | None = None
        self._final: Path | None = None
        if self.to_stdout:
            self._scratch = tempfile.mkdtemp(prefix="memviz-out-")
            self.path: str | None = os.path.join(self._scratch, "out" + suffix)
        elif path is None or in_place:
            self.path = path
        else:
            self._final = Path(path).expanduser()
            partial = f".{self._final.name}.partial-{secrets.token_hex(4)}"
            self.path = str(self._final.with_name(partial))

    def deliver(self) -> None:
        """Put the finished file in its place (once)."""
        if self.to_stdout and self._scratch is not None:
            try:
                if self.path and os.path.isfile(self.path):
                    with open(self.path, "rb") as source:
                        shutil.copyfileobj(source, sys.stdout.buffer, 1 << 20)
                    sys.stdout.buffer.flush()
            finally:
                shutil.rmtree(self._scratch, ignore_errors=True)
                self._scratch = None
        elif self._final is not None and self.path and os.path.lexists(self.path):
            if self._final.is_dir() and not self._final.is_symlink():
                shutil.rmtree(self._final)  # a folder export over an old one (--force)
            os.replace(self.path, self._final)

    def discard(self) -> None:
        """Remove what a failed write left (nothing once delivered)."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        if self._final is not None and self.path and os.path.lexists(self.path):
            if os.path.isdir(self.path) and not os.path.islink(self.path):
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
