"""The live bytes at one moment as collapsed stacks, the text flamegraph.pl, speedscope
and inferno read: one line per distinct stack, its frames from the outermost to the
innermost separated by ``;``, then a space and its bytes.

Each allocation's stack is its Python frames (a run tracked with stacks), then the
module that ran, then the op that made it, then its category, so a flame graph
splits the user's lines first and still tells an activation from a gradient. An
allocation without Python frames starts at "(no Python stack)". The lines add up to
the tracked bytes live at that moment.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..core.analysis import tracked_peak_time
from ..core.categories import CATEGORIES
from ..core.run import Run

NO_STACK = "(no Python stack)"


def peak_time(run: Run) -> float:
    """The tracked peak's moment, found in the rows themselves (the summary's ``peak_t``
    keeps more digits than a file's nanosecond times)."""
    return tracked_peak_time(run.tensors)[0]


def _frame(text: str) -> str:
    """A frame as one token of the format: no separator, no line break."""
    return text.replace(";", ",").replace("\n", " ").strip() or "?"


def folded_stacks(run: Run, t: float) -> Counter[str]:
    """Bytes live at ``t`` by collapsed stack."""
    log = run.tensors
    rows = log.rows
    live = log.live_at(t)
    stacks, modules, ops = (rows.column(c)[live] for c in ("stack", "module", "op"))
    categories, nbytes = rows.column("category")[live], rows.column("nbytes")[live]
    out: Counter[str] = Counter()
    python: dict[int, list[str]] = {}
    for stack, module, op, category, size in zip(stacks.tolist(), modules.tolist(),
                                                 ops.tolist(), categories.tolist(),
                                                 nbytes.tolist(), strict=True):
        frames = python.get(stack)
        if frames is None:  # the tracker keeps a stack innermost frame first
            frames = python[stack] = [_frame(f) for f in reversed(log.stack_text(stack))] \
                or [NO_STACK]
        leaf = [_frame(log.string("module", module) or "(outside any module)"),
                _frame(log.string("op", op) or "(op unknown)"), f"[{CATEGORIES[category]}]"]
        out[";".join(frames + leaf)] += int(size)
    return out


def write_folded(run: Run, out: Path, t: float) -> int:
    """Write the collapsed stacks live at ``t``; the bytes they add up to."""
    stacks = folded_stacks(run, t)
    with open(out, "w", encoding="utf-8") as f:
        for line, size in sorted(stacks.items()):
            f.write(f"{line} {size}\n")
    return sum(stacks.values())
