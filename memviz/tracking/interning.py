"""Strings sent once: each table maps a value to a small integer id.

New entries are collected until the next batch, which sends them before the
events that use them.
"""

from __future__ import annotations


class Interner:
    def __init__(self) -> None:
        self.tables: dict[str, dict[str, int]] = {}
        self.pending: list[list] = []

    def id(self, table: str, value: str) -> int:
        entries = self.tables.setdefault(table, {})
        found = entries.get(value)
        if found is None:
            found = entries[value] = len(entries)
            self.pending.append([table, found, value])
        return found

    def take(self) -> list[list]:
        out, self.pending = self.pending, []
        return out
