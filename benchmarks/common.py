"""A benchmark result row and the table that prints them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Result:
    name: str
    value: float
    unit: str
    budget: str
    ok: bool
    note: str = ""


def print_table(results: list[Result]) -> None:
    rows = [(r.name, f"{r.value:,.1f} {r.unit}", r.budget, "ok" if r.ok else "OVER", r.note)
            for r in results]
    headers = ("benchmark", "measured", "budget", "", "note")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
