"""Text that came from a file or a peer, made safe to show.

A string in a snapshot can hold terminal escapes (retitle the terminal, clear
it, move the cursor) or other control characters. Everything shown from a file
goes through ``printable`` first: control characters other than newline and tab,
and lone surrogates (which JSON's ``\ud800`` escapes carry but no UTF-8 file or
terminal can take), become U+FFFD, and a one-line form folds newlines too.
"""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_LINE_BREAKS = re.compile(r"[\n\t]+")


def printable(text: str, *, one_line: bool = False) -> str:
    cleaned = _CONTROL.sub("\ufffd", text)
    return _LINE_BREAKS.sub(" ", cleaned) if one_line else cleaned


def printable_tree(value: Any, depth: int = 0) -> Any:
    """``value`` (JSON-like: dicts, lists, strings, numbers) with every string and key made
    printable. Nesting past 64 levels is refused with a ValueError."""
    if depth > 64:
        raise ValueError("nested more than 64 levels deep")
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k) if isinstance(k, str) else k: printable_tree(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable_tree(v, depth + 1) for v in value]
    return value
