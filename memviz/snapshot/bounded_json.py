"""JSON from an untrusted file, parsed only when what it would build fits its size.

``json.loads`` builds every map and list a text names at once: three bytes of ``{},``
become a 64-byte dict, so a 21 MB text of them asks for half a GB. Before parsing,
the text's brackets and commas are counted (a bound on the maps, lists and values it
can build, strings holding them included) and a text that would build more than an
honest one of its length is refused.
"""

from __future__ import annotations

import json
from typing import Any

# An honest snapshot's or run's JSON spends at least this many bytes on each map or
# list (a trace entry, a frame, a module row: 30 to 100) and on each value; a text
# within both costs at most about 13 bytes of memory a byte.
CONTAINER_FLOOR_BYTES = 24
VALUE_FLOOR_BYTES = 4
SLACK = 1 << 10


class JsonTooLarge(ValueError):
    pass


def loads(text: str | bytes, what: str = "the JSON") -> Any:
    """``json.loads(text)``, or ``JsonTooLarge`` (a one-line reason) when ``text`` would
    build more maps, lists or values than its length allows."""
    if isinstance(text, bytes):
        containers = text.count(b"{") + text.count(b"[")
        values = text.count(b",")
    else:
        containers = text.count("{") + text.count("[")
        values = text.count(",")
    if containers > SLACK + len(text) // CONTAINER_FLOOR_BYTES or \
            values > SLACK + len(text) // VALUE_FLOOR_BYTES:
        raise JsonTooLarge(f"{what} would build {containers:,} maps and lists and "
                           f"{values:,} values, more than {len(text):,} bytes of it can hold")
    return json.loads(text)
