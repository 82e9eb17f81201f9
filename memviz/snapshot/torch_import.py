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

from ..core.categories import CODE
from ..core.run import Run
from ..core.spec import RunSpec
from ..core.text import printable
from . import bounded_json
from .live_timeline import TARGET_BINS
from .plain_pickle import TRACES_KEY, PlainPickleError, PlainPickleWalker
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
                  progress: Callable[[float], None] | None = None) -> Run:
    """The busiest device's trace and its segments, as a Run. ``progress(fraction)``
    as the file is read."""
    data, reading = _read(Path(path), progress)
    segments = _segments(data, reading)
    traces = [reading.by_trace.get(id(t)) or TraceColumns(reading.stacks)
              for t in data.get(TRACES_KEY, [])]
    device = max(range(len(traces)), key=lambda i: traces[i].entries) if traces else 0
    trace = traces[device] if traces else TraceColumns(reading.stacks)
    segments = [s for s in segments if s.get("device", device) == device]
    return _as_run(trace, segments, reading.stacks, name, run_id, device)


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


def _events(rows: np.ndarray, t: np.ndarray, kind: int, nbytes: np.ndarray,
            category: np.ndarray, offset: np.ndarray, stack: np.ndarray) -> dict:
    """The tensor_events columns of allocations ``rows``: made (kind 0) or freed (1)."""
    n = len(rows)
    return {"t": t[rows], "id": rows, "kind": np.full(n, kind, np.uint8),
            "nbytes": nbytes[rows], "category": category[rows], "offset": offset[rows],
            **{c: np.full(n, -1, np.int32) for c in ("dtype", "shape", "device", "module",
                                                      "op")},
            "stack": stack[rows], "phase": np.zeros(n, np.uint8),
            "step": np.full(n, -1, np.int32)}


def _as_run(trace: TraceColumns, segments: list[dict], stacks: Stacks, name: str,
            run_id: int, device: int) -> Run:
    layout = _Layout(segments)
    n = trace.count
    timed = trace.all_timed and trace.entries > 0
    if timed:
        t_alloc = (trace.take("t_us") - trace.t0_us) / 1e6
        t_free = (trace.take("free_us") - trace.t0_us) / 1e6
    else:  # an entry without its time: order by position, a microsecond apart
        t_alloc = trace.take("t_index") * 1e-6
        free_index = trace.take("free_index")
        t_free = np.where(free_index >= 0, free_index * 1e-6, np.nan)
    nbytes, category = trace.take("nbytes"), trace.take("category")
    offset, stack = layout.offsets(trace.take("addr")), trace.take("stack")
    # active at the end and never traced: these existed before recording began
    seen = set(offset[np.isnan(t_free)].tolist())
    existing = []
    for block in (b for seg in segments for b in seg.get("blocks", [])
                  if b.get("state") == "active_allocated"):
        at = int(layout.offsets(np.array([whole(block.get("address", 0), "an address")]))[0])
        if at not in seen:
            existing.append((at, whole(block.get("size", 0), "a block size"),
                             stacks.of(block.get("frames"))))
    k = len(existing)
    pre = np.array(existing, dtype=np.int64).reshape(k, 3)
    # a trace is in time order already, and then nothing is copied
    order = None if bool((np.diff(t_alloc) >= 0).all()) else np.argsort(t_alloc, kind="stable")

    def arranged(values: np.ndarray, before: np.ndarray) -> np.ndarray:
        values = values if order is None else values[order]
        return values if not k else np.concatenate([before.astype(values.dtype), values])

    t_alloc = arranged(t_alloc, np.zeros(k))
    t_free = arranged(t_free, np.full(k, np.nan))
    nbytes = arranged(nbytes, pre[:, 1])
    category = arranged(category, np.full(k, CODE["other"]))
    offset = arranged(offset, pre[:, 0])
    stack = arranged(stack, pre[:, 2])
    total = n + k
    run = Run(RunSpec(model=printable(name, one_line=True), steps=1), run_id=run_id)
    run.tensors.rows.reserve(total, exact=True)
    run.state = "finished"
    run.environment = {"imported": "PyTorch memory snapshot", "device": device}
    run.model = {"name": run.spec.model, "class": "PyTorch snapshot", "module_tree": []}
    if stacks.frame_ids:
        run.apply({"type": "strings", "entries": [["frame", i, text]
                                                  for text, i in stacks.frame_ids.items()]})
        run.apply({"type": "stacks", "entries": [[i, list(f)]
                                                 for f, i in stacks.stack_ids.items()]})
    frees = ~np.isnan(t_free)
    freed = np.flatnonzero(frees)
    # in chunks: what is built to hand over stays small beside what the run keeps
    for first in range(0, total, APPLY_CHUNK):
        rows = np.arange(first, min(first + APPLY_CHUNK, total))
        run.apply({"type": "tensor_events", "columns": _events(
            rows, t_alloc, 0, nbytes, category, offset, stack)})
    for first in range(0, len(freed), APPLY_CHUNK):
        rows = freed[first:first + APPLY_CHUNK]
        run.apply({"type": "tensor_events", "columns": _events(
            rows, t_free, 1, nbytes, category, offset, stack)})
    # the timeline: bytes live by category at each bin's lowest and highest moment
    t_us, index = trace.timeline.times()
    seconds = (t_us - trace.t0_us) / 1e6 if timed else index * 1e-6
    run.apply({"type": "samples", "columns": trace.timeline.columns(
        seconds, int(pre[:, 1].sum()) if k else 0)})
    return run
