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


def open_in_child(script: str, path: str, how: str,
                  timeout: float = 1800) -> tuple[float, float, int]:
    """Run ``script`` (it prints seconds, peak RSS in KiB, a count) in a fresh Python on
    ``path``; its peak RSS is the opening's own. Returns (seconds, MiB, count)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", script, path, how], capture_output=True,
                         text=True, timeout=timeout)
    if out.returncode:
        raise SystemExit(f"opening {path} ({how}) failed:\n{out.stderr[-2000:]}")
    took, maxrss_kib, n = out.stdout.split()[-3:]
    return float(took), int(maxrss_kib) / 1024, int(n)
