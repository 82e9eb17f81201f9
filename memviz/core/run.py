"""A run as it arrives: spec, environment, samples, phases, steps, log, outcome.

The session thread applies messages to a Run; views read it on their own
timer. ``revision`` grows with every change so a view redraws only when needed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from .category_history import CategoryHistory
from .columns import Columns
from .spec import RunSpec, SpecError
from .stream import SAMPLE_COLUMNS, ProtocolError
from .tensors import TensorLog

ERROR_FIELDS = ("kind", "message", "traceback")
# optional figures of a failure: when it happened (the worker's clock), the size of
# the request the allocator refused, the cap a run passed and the memory it reached
ERROR_DETAILS = ("t", "request_bytes", "cap_bytes", "peak_bytes")


@dataclass
class Phase:
    step: int
    name: str
    begin: float
    end: float = float("nan")


@dataclass
class Step:
    step: int
    loss: float | None
    seconds: float
    tokens: int
    peak_rss_bytes: int
    peak_gpu_bytes: int | None
    t: float
    tracked_peak_bytes: int | None = None
    detailed: bool | None = None  # whether the per-op tracker saw this step


@dataclass
class LogLine:
    t: float
    level: str
    text: str


@dataclass
class Run:
    spec: RunSpec
    run_id: int = 0
    state: str = "starting"
    environment: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    t0_wall: float = 0.0
    samples: Columns = field(default_factory=lambda: Columns(SAMPLE_COLUMNS))
    phases: list[Phase] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    log: list[LogLine] = field(default_factory=list)
    error: dict[str, Any] | None = None
    end_reason: str = ""
    worker_summary: dict[str, Any] = field(default_factory=dict)
    applied_techniques: list[dict[str, Any]] = field(default_factory=list)
    tensors: TensorLog = field(default_factory=TensorLog)
    # a long run opened as a working set: the span whose allocations are loaded (None:
    # every allocation of the run)
    tensors_window: tuple[float, float] | None = None
    cuda_memory: list[dict[str, Any]] = field(default_factory=list)  # one per step on CUDA
    snapshot_path: str = ""  # the .memviz file it was recorded to or opened from
    rank: int = 0  # in a sharded run: which rank this stream is
    ranks: dict[int, Run] = field(default_factory=dict)  # rank 0's Run holds the others
    # an imported snapshot: the other devices' runs; which allocations' categories were
    # inferred (from frames and lifetimes) rather than measured; the device's segments
    device_runs: list[Run] = field(default_factory=list)
    category_inferred: Any = None  # numpy bool per allocation row, or None: all measured
    device_segments: Any = None  # core.segments.SegmentHistory, or None
    _open_phases: dict[tuple[int, str], Phase] = field(default_factory=dict, repr=False)
    _history: CategoryHistory = field(default_factory=CategoryHistory, repr=False)
    revision: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    # -- applying the stream ------------------------------------------------
    def apply(self, msg: dict) -> None:
        """Apply one validated worker message."""
        self.apply_all([msg])

    def apply_all(self, messages: list[dict]) -> None:
        """Apply a frame's validated messages under one lock (one revision step)."""
        with self.lock:
            for msg in messages:
                handler = getattr(self, "_on_" + msg["type"], None)
                if handler is not None:
                    handler(msg)
            self.revision += 1

    def _on_run_started(self, msg: dict) -> None:
        self.environment = msg["environment"]
        self.model = msg["model"]
        self.applied_techniques = list(msg.get("techniques") or [])
        self.t0_wall = float(msg["t0_wall"])
        self.state = "running"

    def _on_discovered(self, msg: dict) -> None:
        try:
            self.spec = RunSpec.from_dict(msg["spec"])
        except (SpecError, TypeError) as exc:
            raise ProtocolError(f"discovered.spec is not a run spec: {exc}") from None
        self.model = msg["model"]

    def _on_samples(self, msg: dict) -> None:
        first = len(self.samples)
        self.samples.append(msg["columns"])
        self._history.sampled(self.samples, first)

    def _on_phase(self, msg: dict) -> None:
        key = (msg["step"], msg["name"])
        if msg["edge"] == "begin":
            phase = Phase(msg["step"], msg["name"], float(msg["t"]))
            self.phases.append(phase)
            self._open_phases[key] = phase
            return
        if key in self._open_phases:
            self._open_phases.pop(key).end = float(msg["t"])

    def _on_step_done(self, msg: dict) -> None:
        loss = msg["loss"]
        self.steps.append(
            Step(
                step=msg["step"],
                loss=None if loss is None else float(loss),
                seconds=float(msg["seconds"]),
                tokens=int(msg["tokens"]),
                peak_rss_bytes=int(msg["peak_rss_bytes"]),
                peak_gpu_bytes=msg["peak_gpu_bytes"],
                t=float(msg["t"]),
                tracked_peak_bytes=msg.get("tracked_peak_bytes"),
                detailed=msg.get("detailed"),
            )
        )

    def _on_strings(self, msg: dict) -> None:
        self.tensors.add_strings(msg["entries"])

    def _on_stacks(self, msg: dict) -> None:
        self.tensors.add_stacks(msg["entries"])

    def _on_tensor_events(self, msg: dict) -> None:
        retags = self.tensors.apply(msg["columns"])
        if retags is not None:
            self._history.retagged(self.samples, retags)

    def _on_cuda_memory(self, msg: dict) -> None:
        self.cuda_memory.append({k: v for k, v in msg.items() if k != "type"})

    def _on_mark(self, msg: dict) -> None:
        self.tensors.marks.append({k: msg[k] for k in ("t", "step", "label", "live_by_category")})

    def _on_log(self, msg: dict) -> None:
        self.log.append(LogLine(float(msg["t"]), msg["level"], msg["text"]))

    def _on_error(self, msg: dict) -> None:
        self.error = {k: msg[k] for k in (*ERROR_FIELDS, *ERROR_DETAILS) if k in msg}
        self.state = "failed"

    def _on_run_done(self, msg: dict) -> None:
        self.end_reason = msg["reason"]
        self.worker_summary = msg["summary"]
        if self.state != "failed":
            self.state = "stopped" if msg["reason"] == "stopped" else "finished"

    # -- events from the session, not the stream ----------------------------
    def add_rank(self, rank: int, spec: dict[str, Any]) -> Run:
        """The Run that rank ``rank`` of this sharded run streams into."""
        with self.lock:
            if rank < 1 or rank in self.ranks:
                raise ValueError(f"rank {rank} is not a new peer of this run")
            self.ranks[rank] = Run(RunSpec.from_dict(spec), run_id=0, rank=rank)
            self.revision += 1
            return self.ranks[rank]

    def fail(self, kind: str, message: str, traceback: str = "", *,
             even_if_ended: bool = False, **details: Any) -> None:
        """Mark the run failed (worker died, connection broke) unless it already ended;
        ``even_if_ended``: also then (its file could not be written: what was measured
        is not all saved). ``details``: figures of the failure (ERROR_DETAILS), such as
        an OOM's cap."""
        with self.lock:
            if self.state in ("finished", "stopped") and not even_if_ended:
                return
            if self.error is None:
                self.error = {"kind": kind, "message": message, "traceback": traceback,
                              **{k: v for k, v in details.items() if k in ERROR_DETAILS}}
            self.state = "failed"
            self.revision += 1

    def mark_stopped(self) -> None:
        """The worker ended after a stop request without saying so itself."""
        with self.lock:
            if not self.finished:
                self.state = "stopped"
                self.end_reason = "stopped"
                self.revision += 1

    def add_log(self, level: str, text: str) -> None:
        with self.lock:
            t = float(self.samples.column("t")[-1]) if len(self.samples) else 0.0
            self.log.append(LogLine(t, level, text))
            self.revision += 1

    @property
    def finished(self) -> bool:
        return self.state in ("finished", "stopped", "failed")
