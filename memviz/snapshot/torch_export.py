"""Export a run as a PyTorch allocator snapshot: what ``python -m torch.cuda._memory_viz``
and pytorch.org/memory_viz read.

The layout is torch's (``segments`` with ``blocks``; ``device_traces`` with
``alloc``, ``free_requested``, ``free_completed`` entries). Every entry and block
has frames: the top one says what memviz knows of it (``module · op``, its phase
and category, the step as the line), then its Python stack where one was
recorded; a backward allocation with no stack of its own gets the stack of the
forward allocation its module made in that step (where the tensor came from).
memviz's own frames are never shown. Addresses come from
the tracker's first-fit layout, so allocations that are live together never
overlap; one segment spans the whole layout and is allocated first. Every entry
carries memviz's category, and its module, op, phase and step in ``user_metadata``
(read back exactly by memviz's import). The web viewer insists that at least one entry is
``"unknown"`` once any has a category, so the segment's entry is. Written as a
pickle (protocol 4: the viewer cannot read 5) of plain containers only, or as
JSON.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..core.categories import CATEGORIES, LABELS
from ..core.run import Run
from .trace_columns import MEMVIZ_METADATA, PHASE_NAMES

PHASES = PHASE_NAMES  # the tracker's phase codes, in order
BASE_ADDRESS = 0x7F00_0000_0000  # any aligned base: the layout's offsets are added to it


# memviz's machinery (its built-in models' own code is the user's model, and kept)
_OWN_FRAMES = tuple(f"{sep}memviz{sep}{part}{sep}" for sep in ("/", "\\") for part in (
    "tracking", "worker", "program", "session", "techniques", "cli"))


def _stack_frames(run: Run, stack_id: int) -> list[dict]:
    frames = []
    for text in run.tensors.stack_text(stack_id, native=True):
        filename, _, rest = text.rpartition(":")
        filename, _, line = filename.rpartition(":")
        if any(part in filename for part in _OWN_FRAMES):
            continue
        frames.append({"filename": filename, "line": int(line) if line.isdigit() else 0,
                       "name": rest})
    return frames


class _Frames:
    """Each allocation's frames, built once per distinct (module, op, phase, category,
    step, stack)."""

    def __init__(self, run: Run, columns: dict[str, np.ndarray]) -> None:
        self.run = run
        self.cols = columns
        self.cache: dict[tuple, list[dict]] = {}
        self.metadata_cache: dict[tuple, str] = {}
        self.stacks: dict[int, list[dict]] = {}  # stack id -> its frames, memviz's left out
        self.forward_stack: dict[tuple[int, int], int] = {}  # (module, step) -> stack
        forward = PHASES.index("forward")
        for i in np.flatnonzero((columns["phase"] == forward) & (columns["stack"] >= 0)):
            key = (int(columns["module"][i]), int(columns["step"][i]))
            if key not in self.forward_stack and self._stack(int(columns["stack"][i])):
                self.forward_stack[key] = int(columns["stack"][i])

    def _stack(self, stack: int) -> list[dict]:
        found = self.stacks.get(stack)
        if found is None:
            found = self.stacks[stack] = _stack_frames(self.run, stack) if stack >= 0 else []
        return found

    def metadata(self, i: int) -> str:
        """memviz's exact facts of allocation ``i`` for its entry's ``user_metadata``
        (what an import reads back: module, op, phase, step and category)."""
        c = self.cols
        key = (int(c["module"][i]), int(c["op"][i]), int(c["phase"][i]), int(c["step"][i]),
               int(c["category"][i]))
        found = self.metadata_cache.get(key)
        if found is None:
            module, op, phase, step, category = key
            log = self.run.tensors
            found = self.metadata_cache[key] = MEMVIZ_METADATA + json.dumps(
                [log.string("module", module), log.string("op", op),
                 PHASES[phase] if 0 <= phase < len(PHASES) else "", step,
                 CATEGORIES[category]], separators=(",", ":"))
        return found

    def __call__(self, i: int) -> list[dict]:
        c = self.cols
        module, op, phase = int(c["module"][i]), int(c["op"][i]), int(c["phase"][i])
        category, step, stack = int(c["category"][i]), int(c["step"][i]), int(c["stack"][i])
        if phase == PHASES.index("backward") and not self._stack(stack):
            # backward runs in autograd's engine: the stack that made it is its forward's
            stack = self.forward_stack.get((module, step), -1)
        key = (module, op, phase, category, step, stack)
        found = self.cache.get(key)
        if found is None:
            log = self.run.tensors
            module_name = log.string("module", module) or "(outside any module)"
            op_name = log.string("op", op).removesuffix(".default") or "(unknown op)"
            where = ", ".join(filter(None, [PHASES[phase] if 0 <= phase < len(PHASES) else "",
                                            LABELS[CATEGORIES[category]]]))
            top = {"filename": module_name, "line": max(step, 0),
                   "name": f"{module_name} · {op_name} [{where}]"}
            found = self.cache[key] = [top, *self._stack(stack)]
        return found


def to_torch_snapshot(run: Run) -> dict[str, Any]:
    rows = run.tensors.rows
    with run.lock:
        t_alloc = np.asarray(rows.column("t_alloc"))
        t_free = np.asarray(rows.column("t_free"))
        nbytes = np.asarray(rows.column("nbytes"), dtype=np.int64)
        offset = np.asarray(rows.column("offset"), dtype=np.int64)
        category = np.asarray(rows.column("category"))
        frames = _Frames(run, {name: np.asarray(rows.column(name)) for name in
                               ("module", "op", "phase", "category", "step", "stack")})
    extent = int((offset + nbytes).max()) if len(rows) else 0
    events: list[tuple[float, int, dict]] = []
    for i in range(len(rows)):
        entry = {"addr": BASE_ADDRESS + int(offset[i]), "size": int(nbytes[i]), "stream": 0,
                 "frames": frames(i), "category": CATEGORIES[int(category[i])],
                 "user_metadata": frames.metadata(i)}
        events.append((float(t_alloc[i]), 1, {"action": "alloc", **entry,
                                              "time_us": int(t_alloc[i] * 1e6)}))
        if not np.isnan(t_free[i]):
            us = int(t_free[i] * 1e6)
            events.append((float(t_free[i]), 0, {"action": "free_requested", **entry,
                                                 "time_us": us}))
            events.append((float(t_free[i]), 0, {"action": "free_completed", **entry,
                                                 "time_us": us}))
    events.sort(key=lambda e: (e[0], e[1]))  # at equal times, frees before allocs
    trace = [{"action": "segment_alloc", "addr": BASE_ADDRESS, "size": extent, "stream": 0,
              "frames": [], "time_us": 0, "category": "unknown"}]
    trace += [e[2] for e in events]
    live = np.flatnonzero(np.isnan(t_free))
    live = live[np.argsort(offset[live])]
    blocks, cursor = [], 0
    for i in live.tolist():
        start = int(offset[i])
        if start > cursor:
            blocks.append({"address": BASE_ADDRESS + cursor, "size": start - cursor,
                           "requested_size": 0, "state": "inactive", "frames": []})
        blocks.append({"address": BASE_ADDRESS + start, "size": int(nbytes[i]),
                       "requested_size": int(nbytes[i]), "state": "active_allocated",
                       "frames": frames(int(i))})
        cursor = start + int(nbytes[i])
    if cursor < extent:
        blocks.append({"address": BASE_ADDRESS + cursor, "size": extent - cursor,
                       "requested_size": 0, "state": "inactive", "frames": []})
    allocated = int(nbytes[live].sum()) if len(live) else 0
    segment = {"device": 0, "address": BASE_ADDRESS, "total_size": extent,
               "allocated_size": allocated, "active_size": allocated,
               "requested_size": allocated, "stream": 0, "segment_type": "large",
               "segment_pool_id": (0, 0), "is_expandable": False, "frames": [],
               "blocks": blocks}
    return {"segments": [segment] if extent else [], "device_traces": [trace],
            "allocator_settings": {}, "external_annotations": []}


def write(run: Run, out: str | Path, kind: str) -> None:
    snapshot = to_torch_snapshot(run)
    out = Path(out)
    if kind == "torch-pickle":
        with open(out, "wb") as f:
            pickle.dump(snapshot, f, protocol=4)
    elif kind == "torch-json":
        snapshot["segments"] = [{**s, "segment_pool_id": list(s["segment_pool_id"])}
                                for s in snapshot["segments"]]
        out.write_text(json.dumps(snapshot))
    else:
        raise ValueError(f"unknown export kind {kind!r}")
