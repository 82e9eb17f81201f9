"""Live bytes by the code that made them: a call tree (for a flame graph or icicle) and
a table of frames, over any set of allocations (those live at a moment, say).

A path is the allocation's Python frames from the outermost in (the user's own files:
the standard library's and installed packages' frames are folded away unless asked
for), then the module that ran and the op that made it, so a run tracked without
stacks still splits by module and op. Allocations with no Python frame start at
``NO_STACK``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .categories import CATEGORIES
from .run import Run

NO_STACK = "(no Python stack)"
OUTSIDE = "(outside any module)"
# a frame in an installed package or the standard library (not the user's own code)
_LIBRARY = re.compile(r"[/\\](site|dist)-packages[/\\]|[/\\]lib[/\\]python3\.\d+[/\\]|^<frozen ")


def is_library_frame(text: str) -> bool:
    return _LIBRARY.search(text) is not None


@dataclass
class CallNode:
    name: str
    kind: str  # "root", "frame", "module" or "op"
    total: int = 0
    count: int = 0
    by_category: np.ndarray = field(default_factory=lambda: np.zeros(len(CATEGORIES),
                                                                     np.int64))
    children: dict[str, CallNode] = field(default_factory=dict)
    groups: list[np.ndarray] = field(default_factory=list)  # the rows of paths ending here

    def child(self, name: str, kind: str) -> CallNode:
        found = self.children.get(name)
        if found is None:
            found = self.children[name] = CallNode(name, kind)
        return found

    def rows(self) -> np.ndarray:
        """Every allocation row under this node."""
        parts = list(self.groups)
        for child in self.children.values():
            parts.append(child.rows())
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    @property
    def category(self) -> str:
        """The category with the most bytes under this node."""
        return CATEGORIES[int(np.argmax(self.by_category))]


@dataclass
class FrameLine:
    frame: str
    own: int  # bytes whose innermost shown frame this is
    total: int  # bytes with this frame anywhere on their path (counted once each)
    count: int


@dataclass
class CallSites:
    root: CallNode
    frames: list[FrameLine]  # largest total first
    has_stacks: bool
    paths: dict[tuple[str, ...], np.ndarray]  # each path's frames -> its rows

    def rows_of_frame(self, frame: str) -> np.ndarray:
        parts = [rows for path, rows in self.paths.items() if frame in path]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def call_sites(run: Run, rows: np.ndarray, library: bool = False) -> CallSites:
    """The call tree and frame table of allocation ``rows`` of ``run``."""
    log = run.tensors
    with run.lock:
        cols = log.rows
        stack, module, op = (cols.column(c)[rows] for c in ("stack", "module", "op"))
        nbytes = cols.column("nbytes")[rows].astype(np.int64)
        category = cols.column("category")[rows].astype(np.int64)
        keys = np.stack([stack, module, op], axis=1) if len(rows) else np.zeros((0, 3))
        unique, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        frames_of: dict[int, tuple[str, ...]] = {}
        root = CallNode("all", "root")
        by_frame: dict[str, FrameLine] = {}
        paths: dict[tuple[str, ...], list[np.ndarray]] = {}
        has_stacks = False
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
        for g, (s, m, o) in enumerate(unique.tolist()):
            members = order[bounds[g]:bounds[g + 1]]
            group_rows = rows[members]
            size = int(nbytes[members].sum())
            cats = np.bincount(category[members], weights=nbytes[members],
                               minlength=len(CATEGORIES)).astype(np.int64)
            frames = frames_of.get(s)
            if frames is None:
                shown = list(reversed(log.stack_text(int(s)))) if s >= 0 else []
                has_stacks = has_stacks or bool(shown)
                if not library:
                    shown = [f for f in shown if not is_library_frame(f)]
                frames = frames_of[s] = tuple(shown) or (NO_STACK,)
            path = [(f, "frame") for f in frames] + [
                (log.string("module", int(m)) or OUTSIDE, "module"),
                (log.string("op", int(o)) or "(op unknown)", "op")]
            node = root
            _add(node, size, len(members), cats)
            for name, kind in path:
                node = node.child(name, kind)
                _add(node, size, len(members), cats)
            node.groups.append(group_rows)
            paths.setdefault(frames, []).append(group_rows)
            for frame in set(frames):
                line = by_frame.setdefault(frame, FrameLine(frame, 0, 0, 0))
                line.total += size
                line.count += len(members)
            by_frame[frames[-1]].own += size
    return CallSites(root, sorted(by_frame.values(), key=lambda f: -f.total), has_stacks,
                     {p: np.concatenate(r) for p, r in paths.items()})


def _add(node: CallNode, size: int, count: int, cats: np.ndarray) -> None:
    node.total += size
    node.count += count
    node.by_category += cats
