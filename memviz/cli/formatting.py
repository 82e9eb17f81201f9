"""Human-readable numbers and tables for the terminal."""

from __future__ import annotations


def human_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def table(headers: list[str], rows: list[list[str]], *, numbers: bool = True) -> str:
    """Columns padded to fit; with ``numbers`` every column but the first is right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    # names (the first column) read left to right; numbers line up on the right
    out += ["  ".join(c.ljust(w) if i == 0 or not numbers else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    return "\n".join(out)


def ranks_lines(distributed: dict | None) -> list[str]:
    """Each rank's tracked peak, their sum, and which rank peaks highest and why."""
    from ..core.rank_summary import highest_text

    if not distributed or not distributed.get("ranks"):
        return []
    peaks = [(r["rank"], (r.get("tracking") or {}).get("tracked_bytes"))
             for r in distributed["ranks"]]
    lines = [f"{len(peaks)} ranks, tracked peak each: "
             + ", ".join(f"rank {rank} {human_bytes(p)}" for rank, p in peaks)
             + f"; sum {human_bytes(distributed['sum']['tracked_bytes'])}"]
    why = highest_text(distributed.get("highest"), human_bytes)
    return [*lines, why] if why else lines
