"""Steps and phases as the stream carries them, for any loop that runs torch.

The worker's own runner and a user's program tracked by ``memviz.track`` mark
their steps and phases the same way: a ``phase`` message at each edge (and the
tracker told, so each allocation knows its phase), the exact peaks per step
(the kernel's RSS high-water mark, the tracker's, CUDA's) and a ``step_done``.
"""

from __future__ import annotations

import threading
import time

import torch

from ..core.detail import DetailPolicy
from .emitter import now

# the phase a step without the per-op tracker is marked with (temporaries unseen)
UNTRACKED = "untracked"


class StepMeter:
    def __init__(self, emitter, sampler, t0: float, tracker=None,
                 device: torch.device | None = None, detail: DetailPolicy | None = None,
                 detail_next: threading.Event | None = None, count_flops: bool = False) -> None:
        """``detail``: which steps the per-op tracker sees (all, without one);
        ``detail_next``: set from outside (a window's "record the next step in full");
        ``count_flops``: each detailed step's FLOPs counted from its ops (``flops``
        holds the last one's)."""
        self.emitter = emitter
        self.sampler = sampler
        self.t0 = t0
        self.tracker = tracker
        self.detail = detail or DetailPolicy(everything=True)
        self.detail_next = detail_next or threading.Event()
        self._untracked: int | None = None  # the step whose temporaries go untracked
        self.device = device or torch.device("cpu")
        self.cuda = self.device.type == "cuda"
        self.done: list[dict] = []  # every step_done message, for a rank's final figures
        self._started = 0.0
        self.count_flops = count_flops and hasattr(tracker, "count_flops")
        self._counting = False
        self.flops: int | None = None  # of the last detailed step

    def t(self) -> float:
        return now() - self.t0

    def phase_begin(self, step: int, name: str) -> None:
        self.emitter.send({"type": "phase", "t": self.t(), "step": step, "name": name,
                           "edge": "begin"})
        if self.tracker is not None:
            self.tracker.set_phase(name, step)

    def phase_end(self, step: int, name: str) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        if self.tracker is not None:
            self.tracker.set_phase("", step)
        self.emitter.send({"type": "phase", "t": self.t(), "step": step, "name": name,
                           "edge": "end"})

    def mark(self, step: int, label: str) -> None:
        """Send the live bytes per category at this moment (tracked runs only)."""
        if self.tracker is not None:
            self.emitter.send({"type": "mark", "t": self.t(), "step": step, "label": label,
                               "live_by_category": self.tracker.live_bytes()})

    def begin(self, step: int = 0) -> None:
        """A step begins: every per-step peak starts over, and the per-op tracker is on
        or off for it."""
        self.sampler.take_step_peak()
        if self.tracker is not None:
            detailed = self.detail.detailed(step) or self.detail_next.is_set()
            self.detail_next.clear()
            self.tracker.set_detail(detailed)
            detailed = self.tracker.detailed  # on CUDA every step is seen whole
            if not detailed:  # the timeline says so: temporaries are not seen this step
                self._untracked = step
                self.emitter.send({"type": "phase", "t": self.t(), "step": step,
                                   "name": UNTRACKED, "edge": "begin"})
            self.tracker.take_step_peak()
            if self._simulated_device():
                self.tracker.device_step()
            if self.count_flops:
                self._counting = detailed
                self.tracker.count_flops(detailed)
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        self._started = time.perf_counter()

    def end(self, step: int, loss: float | None, tokens: int) -> dict:
        if self._counting:
            self._counting = False
            self.flops = self.tracker.count_flops(False)
        peak_gpu = int(torch.cuda.max_memory_allocated(self.device)) if self.cuda else None
        if self.cuda and self.tracker is not None:
            self._send_cuda_memory(step)
        elif self._simulated_device():
            peak_gpu = self._send_simulated_memory(step)
        if self._untracked is not None:
            self.emitter.send({"type": "phase", "t": self.t(), "step": self._untracked,
                               "name": UNTRACKED, "edge": "end"})
            self._untracked = None
        self.done.append({
            "type": "step_done",
            "t": self.t(),
            "step": step,
            "loss": loss,
            "seconds": time.perf_counter() - self._started,
            "tokens": tokens,
            "peak_rss_bytes": self.sampler.take_step_peak(),
            "peak_gpu_bytes": peak_gpu,
            "tracked_peak_bytes": (
                self.tracker.take_step_peak() if self.tracker is not None else None
            ),
            "detailed": bool(self.tracker is not None and self.tracker.detailed),
        })
        self.emitter.send(self.done[-1])
        return self.done[-1]

    def _simulated_device(self) -> bool:
        return getattr(self.tracker, "simulated_device", None) is not None

    def _send_simulated_memory(self, step: int) -> int:
        """A simulated CUDA step's end, as a real one reports it: the allocator model's
        state and the step's peak allocated bytes."""
        peak, state = self.tracker.device_step()
        self.emitter.send({"type": "cuda_memory", "t": self.t(), "step": step, **state,
                           "by_category": self.tracker.live_bytes(),
                           "torch_allocated": state["allocated"],
                           "tracked_rounded": state["allocated"]})
        return peak

    def _send_cuda_memory(self, step: int) -> None:
        """The allocator's state at the step's end, from its trace (reserved, segments,
        fragmentation), beside what torch reports as allocated."""
        self.tracker.pull()
        summary = self.tracker.segment_summary()
        self.emitter.send({"type": "cuda_memory", "t": self.t(), "step": step, **summary,
                           "torch_allocated": int(torch.cuda.memory_allocated(self.device)),
                           "tracked_rounded": summary["allocated"]})
