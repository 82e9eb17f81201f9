"""Memory sizes as users write them: ``24GiB``, ``1500MiB``, ``2g`` (binary units)."""

from __future__ import annotations

import re

from .spec import SpecError

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1 << 10, "m": 1 << 20,
          "mib": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gib": 1 << 30, "gb": 1 << 30,
          "t": 1 << 40, "tib": 1 << 40, "tb": 1 << 40}


MAX_SIZE = 1 << 60  # 1 EiB: a size past it is a typo, not a machine


class SizeTooLarge(SpecError):
    """A size in the right form, past anything a machine has."""


def parse_size(text: str) -> int:
    """``24GiB`` → bytes; a SpecError with the accepted form otherwise."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise SpecError(f"a memory size is a number and a unit like 24GiB or 512MiB, "
                        f"not {text!r}")
    value = float(match.group(1)) * _UNITS[unit]
    if value > MAX_SIZE:
        raise SizeTooLarge(f"{str(text).strip()[:40]} is more memory than any machine has "
                        f"(at most {MAX_SIZE >> 50} PiB)")
    if int(value) <= 0:
        raise SpecError(f"the limit must be above zero, not {text!r}")
    return int(value)
