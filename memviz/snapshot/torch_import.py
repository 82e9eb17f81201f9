"""Open a PyTorch memory snapshot (``torch.cuda.memory._dump_snapshot``: pickle, or JSON)
as a Run, so the same views show a GPU cluster's run on a workstation.

Pickles are walked by ``plain_pickle``, which admits no class at all (a snapshot is
plain dicts, lists, strings and numbers; anything else is refused before any of it
runs) and hands each batch of trace entries to ``TraceColumns`` as it is read, so a
multi-GB snapshot opens in memory proportional to its allocations' columns, not to
its Python objects. Trace entries become allocations (their ``category`` where
present, ``other`` for torch's ``unknown``); blocks still active at the end with no
``alloc`` entry existed before recording began and start at time 0.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..core.categories import CATEGORIES, CODE
from ..core.run import Run
from ..core.spec import RunSpec
from ..core.text import printable
from . import bounded_json
from .category_inference import infer
from .live_timeline import TARGET_BINS
from .plain_pickle import TRACES_KEY, PlainPickleError, PlainPickleWalker
from .segment_import import measured_history
from .trace_columns import Stacks, TorchSnapshotError, TraceColumns, whole

# an honest snapshot's entry takes about this many bytes at least (to size the
# timeline's bins from the file's size before its entries are counted)
ENTRY_BYTES_AT_LEAST = 64

# JSON is read whole (the standard library has no streaming parser): a cap keeps that
# to a few GB of RAM; PyTorch writes pickles, which have none
MAX_JSON_BYTES = 512 << 20
# An honest snapshot spends tens of bytes on each trace entry or block, even with
# pickle's memo; a file whose entries (memo references to one object, say) outnumber
# one per ENTRY_FLOOR_BYTES lies about itself and is refused as soon as it does.
ENTRY_FLOOR_BYTES = 8
ENTRY_SLACK = 1 << 12
# a snapshot holds one trace a GPU of its machine; more is a file that lies (each
# trace's columns cost memory however short it is)
MAX_DEVICE_TRACES = 256
APPLY_CHUNK = 1 << 18


def looks_like_torch_snapshot(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(2)
    return head[:1] == b"\x80" or head.lstrip()[:1] == b"{"


class _Reading:
    """The sink of a pickle walk: each device trace's entries into its TraceColumns,
    within the entries the file's size allows."""

    def __init__(self, file_bytes: int) -> None:
        self.stacks = Stacks()
        self.by_trace: dict[int, TraceColumns] = {}
        self.budget = ENTRY_SLACK + file_bytes // ENTRY_FLOOR_BYTES
        self.file_bytes = file_bytes
        self.bin_entries = file_bytes // (ENTRY_BYTES_AT_LEAST * TARGET_BINS)
        self.walker: PlainPickleWalker | None = None
        self.entries = 0

    def columns_for(self, trace: list) -> TraceColumns:
        found = self.by_trace.get(id(trace))
        if found is None:
            if len(self.by_trace) >= MAX_DEVICE_TRACES:
                raise _too_many_traces(len(self.by_trace) + 1)
            found = self.by_trace[id(trace)] = TraceColumns(self.stacks, self.bin_entries)
        return found

    def __call__(self, trace: list, entries: list) -> None:
        self.entries += len(entries)
        if self.entries > self.budget:
            raise TorchSnapshotError(f"it claims {self.entries:,} entries or more, more "
                                     f"than a {self.file_bytes:,}-byte file can hold")
        self.columns_for(trace).add(entries, self.walker.forget if self.walker else None)


def _too_many_traces(count: int) -> TorchSnapshotError:
    return TorchSnapshotError(f"it claims {count:,} device traces or more; a snapshot holds "
                              f"one a GPU, at most {MAX_DEVICE_TRACES}")


def _read(path: Path, progress: Callable[[float], None] | None = None
          ) -> tuple[dict, _Reading]:
    """The snapshot's top map, its traces' entries already taken into columns."""
    size = path.stat().st_size
    reading = _Reading(size)
    try:
        with open(path, "rb") as f:
            is_pickle = f.read(1) == b"\x80"
        if is_pickle:
            reading.walker = PlainPickleWalker(path, reading, progress)
            try:
                data = reading.walker.walk()
            finally:
                reading.walker = None  # and its memo with it
        else:
            if size > MAX_JSON_BYTES:
                raise TorchSnapshotError(f"a JSON snapshot larger than {MAX_JSON_BYTES >> 20} "
                                         "MiB (PyTorch's own are pickles, which have no limit)")
            data = bounded_json.loads(path.read_bytes(), "the snapshot")
    except OSError as exc:  # mapping or reading the file failed (no address space left)
        raise TorchSnapshotError(f"cannot read it ({exc.strerror or exc})") from None
    except PlainPickleError as exc:
        text = str(exc)
        raise TorchSnapshotError(text if text.startswith("refused") or "can hold" in text
                                 else f"not a readable PyTorch snapshot ({text})") from None
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, TorchSnapshotError):
            raise
        raise TorchSnapshotError(f"not a readable PyTorch snapshot ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("segments", []), list) or \
            not isinstance(data.get(TRACES_KEY, []), list):
        raise TorchSnapshotError("not a PyTorch memory snapshot (no segments or "
                                 "device_traces)")
    if len(data.get(TRACES_KEY, [])) > MAX_DEVICE_TRACES:
        raise _too_many_traces(len(data[TRACES_KEY]))
    for trace in data.get(TRACES_KEY, []):
        if not isinstance(trace, list):
            raise TorchSnapshotError("a device trace is not a list")
        if trace:  # not streamed (JSON, or a pickle that built it another way)
            reading(trace, trace[:])
            trace.clear()
    return data, reading


def _segments(data: dict, reading: _Reading) -> list[dict]:
    segments = data.get("segments", [])
    if not all(isinstance(s, dict) for s in segments):
        raise TorchSnapshotError("a segment is not a map")
    for seg in segments:
        blocks = seg.get("blocks", [])
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            raise TorchSnapshotError("a segment's blocks are not a list of maps")
    claimed = reading.entries + len(segments) + sum(len(s.get("blocks", [])) for s in segments)
    if claimed > reading.budget:
        raise TorchSnapshotError(f"it claims {claimed:,} entries, more than a "
                                 f"{reading.file_bytes:,}-byte file can hold")
    return segments


def open_snapshot(path: str | Path, name: str, run_id: int = 0,
                  progress: Callable[[float], None] | None = None,
                  device: int | None = None) -> Run:
    """One device's trace and segments as a Run: ``device``'s, else the busiest's. The
    other devices with entries come with it (``run.device_runs``), each a Run of its own.
    ``progress(fraction)`` as the file is read."""
    data, reading = _read(Path(path), progress)
    segments = _segments(data, reading)
    traces = [reading.by_trace.get(id(t)) or TraceColumns(reading.stacks)
              for t in data.get(TRACES_KEY, [])]
    used = [i for i, t in enumerate(traces) if t.entries] or \
        sorted({s.get("device", 0) for s in segments if isinstance(s.get("device", 0), int)}) \
        or [0]
    if device is not None and device not in used:
        raise TorchSnapshotError(f"it has no entries for device {device} (it has "
                                 f"{', '.join(f'cuda:{d}' for d in used)})")
    chosen = device if device is not None else \
        max(used, key=lambda i: traces[i].entries if i < len(traces) else 0)
    runs = {}
    for index in [chosen, *(d for d in used if d != chosen)]:
        trace = traces[index] if index < len(traces) else TraceColumns(reading.stacks)
        mine = [s for s in segments if s.get("device", index) == index]
        runs[index] = _as_run(trace, mine, reading.stacks, name, run_id, index)
    run = runs.pop(chosen)
    run.device_runs = [runs[d] for d in sorted(runs)]
    return run


class _Layout:
    """Segments laid end to end, so offsets stay compact on a sparse address space."""

    def __init__(self, segments: list[dict]) -> None:
        spans = sorted((whole(s.get("address", 0), "an address"),
                        whole(s.get("total_size", 0), "a segment size")) for s in segments)
        self.bases = np.array([b for b, _ in spans], dtype=np.int64)
        self.sizes = np.array([n for _, n in spans], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64) \
            if spans else np.zeros(0, np.int64)
        self.end = int(self.sizes.sum()) if spans else 0

    def offsets(self, addrs: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.bases, addrs, side="right") - 1
        inside = i >= 0
        if len(self.bases):
            j = np.clip(i, 0, None)
            inside &= addrs < self.bases[j] + self.sizes[j]
            within = self.starts[j] + addrs - self.bases[j]
        else:
            within = np.zeros_like(addrs)
        return np.where(inside, within, self.end + addrs % (1 << 30))


def _events(rows: np.ndarray, t: np.ndarray, kind: int, cols: dict[str, np.ndarray]) -> dict:
    """The tensor_events columns of allocations ``rows``: made (kind 0) or freed (1)."""
    n = len(rows)
    return {"t": t[rows], "id": rows, "kind": np.full(n, kind, np.uint8),
            **{c: cols[c][rows] for c in ("nbytes", "category", "offset", "stack", "module",
                                           "op", "phase", "step")},
            **{c: np.full(n, -1, np.int32) for c in ("dtype", "shape", "device")}}


BEFORE_RECORDING = "(alive before recording began)"


def _as_run(trace: TraceColumns, segments: list[dict], stacks: Stacks, name: str,
            run_id: int, device: int) -> Run:
    layout = _Layout(segments)
    n = trace.count
    timed = trace.all_timed and trace.entries > 0
    t_index, free_index = trace.take("t_index"), trace.take("free_index")
    t_us, free_us = trace.take("t_us"), trace.take("free_us")
    if timed:
        t_alloc = (t_us - trace.t0_us) / 1e6
        t_free = (free_us - trace.t0_us) / 1e6
    else:  # an entry without its time: order by position, a microsecond apart
        t_alloc = t_index * 1e-6
        t_free = np.where(free_index >= 0, free_index * 1e-6, np.nan)
    del t_us, free_us
    cols = {c: trace.take(c) for c in ("nbytes", "category", "stack", "measured", "module",
                                       "op", "phase", "step")}
    cols["addr"] = trace.take("addr")
    # active at the end and never traced: these existed before recording began
    seen = set(cols["addr"][np.isnan(t_free)].tolist())
    existing = []
    for block in (b for seg in segments for b in seg.get("blocks", [])
                  if b.get("state") == "active_allocated"):
        at = whole(block.get("address", 0), "an address")
        if at not in seen:
            existing.append((at, whole(block.get("size", 0), "a block size"),
                             stacks.of(block.get("frames"))))
    k = len(existing)
    pre = np.array(existing, dtype=np.int64).reshape(k, 3)
    # a trace is in time order already, and then nothing is copied
    order = None if bool((np.diff(t_alloc) >= 0).all()) else np.argsort(t_alloc, kind="stable")
    before_op = trace.name_id("op", BEFORE_RECORDING)
    firsts = {"nbytes": pre[:, 1], "addr": pre[:, 0], "stack": pre[:, 2],
              "category": np.full(k, CODE["other"]), "measured": np.zeros(k),
              "module": np.full(k, -1), "op": np.full(k, before_op), "phase": np.zeros(k),
              "step": np.full(k, -1)}

    def arranged(values: np.ndarray, before: np.ndarray) -> np.ndarray:
        values = values if order is None else values[order]
        return values if not k else np.concatenate([before.astype(values.dtype), values])

    t_alloc = arranged(t_alloc, np.zeros(k))
    t_free = arranged(t_free, np.full(k, np.nan))
    t_index = arranged(t_index, np.full(k, -1))
    free_index = arranged(free_index, np.full(k, -1))
    cols = {c: arranged(v, firsts[c]) for c, v in cols.items()}
    cols["offset"] = layout.offsets(cols["addr"])
    # where the entry said nothing of its phase, its stack may
    stack_phase = np.array(stacks.phase or [0], dtype=np.uint8)
    said = cols["phase"]
    from_stack = np.where(cols["stack"] >= 0, stack_phase[np.clip(cols["stack"], 0, None)], 0)
    cols["phase"] = np.where(said > 0, said, from_stack).astype(np.uint8)
    measured = cols.pop("measured").astype(bool)
    cols["category"] = infer(t_alloc, t_free, cols["phase"], cols["category"], measured)
    total = n + k
    run = Run(RunSpec(model=printable(name, one_line=True), steps=1, device=f"cuda:{device}",
                      imported="PyTorch snapshot"), run_id=run_id)
    run.tensors.rows.reserve(total, exact=True)
    run.state = "finished"
    run.environment = {"imported": "PyTorch snapshot", "device": device}
    run.model = {"name": run.spec.model, "class": "PyTorch snapshot", "module_tree": []}
    run.category_inferred = None if measured.all() else ~measured

    def clock(t_us: float, index: int) -> float:
        return (t_us - trace.t0_us) / 1e6 if timed else index * 1e-6

    run.device_segments = measured_history(segments, trace.segment_events, clock,
                                           cols.pop("addr"), cols["nbytes"], t_alloc,
                                           t_free, cols["category"])
    if trace.ooms:  # the trace's failed requests: the run ran out of memory there
        oom = trace.ooms[0]
        t = clock(oom["t_us"], oom["index"])
        run.error = {"kind": "oom", "t": t, "request_bytes": oom["request_bytes"],
                     "device_free_bytes": oom["device_free_bytes"],
                     "message": f"CUDA out of memory: {oom['request_bytes']:,} bytes asked "
                                f"for on cuda:{device}"}
    names = [[kind, i, text] for (kind, text), i in trace.names.items()]
    if stacks.frame_ids:
        names += [["frame", i, text] for text, i in stacks.frame_ids.items()]
    if names:
        run.apply({"type": "strings", "entries": names})
    if stacks.stack_ids:
        run.apply({"type": "stacks", "entries": [[i, list(f)]
                                                 for f, i in stacks.stack_ids.items()]})
    freed = np.flatnonzero(~np.isnan(t_free))
    # in chunks: what is built to hand over stays small beside what the run keeps
    for first in range(0, total, APPLY_CHUNK):
        rows = np.arange(first, min(first + APPLY_CHUNK, total))
        run.apply({"type": "tensor_events", "columns": _events(rows, t_alloc, 0, cols)})
    for first in range(0, len(freed), APPLY_CHUNK):
        rows = freed[first:first + APPLY_CHUNK]
        run.apply({"type": "tensor_events", "columns": _events(rows, t_free, 1, cols)})
    # the timeline: bytes live by category at each bin's lowest and highest moment (the
    # moments the trace chose; the bytes by category as inferred)
    point_us, point_index = trace.timeline.times()
    seconds = (point_us - trace.t0_us) / 1e6 if timed else point_index * 1e-6
    if len(point_index):
        by_category = live_by_category_at(point_index, t_index, free_index, cols["nbytes"],
                                          cols["category"])
        samples = trace.timeline.columns(seconds, 0, by_category)
    else:  # nothing traced: what existed before, flat
        samples = trace.timeline.columns(seconds, int(pre[:, 1].sum()) if k else 0)
    history = run.device_segments
    if history.segments:  # the segments held at each point: what torch reserved
        samples["torch_reserved"] = history.reserved_at(samples["t"])
    run.apply({"type": "samples", "columns": samples})
    return run


def live_by_category_at(points: np.ndarray, t_index: np.ndarray, free_index: np.ndarray,
                        nbytes: np.ndarray, category: np.ndarray) -> np.ndarray:
    """Bytes live by category just after each entry index of ``points`` (allocations
    older than the trace have index -1: live throughout)."""
    freed = free_index >= 0
    index = np.concatenate([t_index, free_index[freed]])
    delta = np.concatenate([nbytes, -nbytes[freed]]).astype(np.int64)
    cats = np.concatenate([category, category[freed]])
    order = np.argsort(index, kind="stable")
    index, delta, cats = index[order], delta[order], cats[order]
    out = np.zeros((len(points), len(CATEGORIES)), dtype=np.float64)
    for code in np.unique(cats):
        mine = cats == code
        running = np.cumsum(delta[mine])
        at = np.searchsorted(index[mine], points, side="right") - 1
        out[:, code] = np.where(at >= 0, running[np.clip(at, 0, None)], 0)
    return out
