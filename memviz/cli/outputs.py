"""Output paths checked before anything runs, so a typo never costs a whole run."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.spec import SpecError


def check_output(path: str | None, *, overwrite: bool = True, folder: bool = False) -> None:
    """Refuse ``path`` now if writing it later would fail: its folder is missing or
    not writable, it is a folder (or, with ``folder``, a file), or it exists and may
    not be overwritten."""
    if not path:
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
