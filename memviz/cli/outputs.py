"""Output paths checked before anything runs, so a typo never costs a whole run."""

from __future__ import annotations

import argparse
import json
import os
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
    else:
        Path(path).expanduser().write_text(text, encoding="utf-8")


def write_json(path: str, data: Any, indent: int = 2) -> None:
    write_text(path, json.dumps(data, indent=indent) + "\n")


class StdoutFile:
    """A file a command writes by path (SQLite, an export) that is to end on standard
    output: written to a private temporary file, then copied out and removed."""

    def __init__(self, path: str | None, suffix: str) -> None:
        self.to_stdout = path == STDOUT
        self._scratch = None
        if self.to_stdout:
            self._scratch = tempfile.mkdtemp(prefix="memviz-out-")
            self.path: str | None = os.path.join(self._scratch, "out" + suffix)
        else:
            self.path = path

    def deliver(self) -> None:
        """Copy the finished file to standard output (once), then remove it."""
        if not self.to_stdout or self._scratch is None:
            return
        try:
            if self.path and os.path.isfile(self.path):
                with open(self.path, "rb") as source:
                    shutil.copyfileobj(source, sys.stdout.buffer, 1 << 20)
                sys.stdout.buffer.flush()
        finally:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
