"""The sampling thread: process, system and GPU memory at a fixed rate.

Every sample also carries the exact peak RSS since the previous one, so a spike
that comes and goes between two samples still shows. Step boundaries ask for
the peak since the step began through ``take_step_peak``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from ..core.categories import CATEGORIES
from . import procmem
from .gpu import NvmlDevice

NAN = math.nan
# Reading USS makes the kernel walk every page table under the mm lock, which
# stalls the run's own page faults: at 20 Hz it cost 22 % of a gpt2-tiny step.
# Once a second it still cost about 1 %; every five seconds it is lost in the noise,
# and between reads the last value carries on (USS moves slowly).
USS_INTERVAL_S = 5.0


class MemorySampler(threading.Thread):
    def __init__(
        self,
        hz: float,
        emit: Callable[[tuple[float, ...]], None],
        clock: Callable[[], float],
        t0: float,
        nvml: NvmlDevice,
        torch_cuda_device: int | None = None,
        tracker=None,
    ) -> None:
        super().__init__(name="memviz-sampler", daemon=True)
        self.period = 1.0 / hz
        self.emit = emit
        self.clock = clock
        self.t0 = t0
        self.nvml = nvml
        self.cuda_index = torch_cuda_device
        self.tracker = tracker
        self.peak = procmem.PeakRss()
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._step_peak = 0
        self._sample_peak = 0
        self._uss = NAN
        self._uss_at = -math.inf

    def _read_peak(self) -> int:
        """Fold the kernel's mark into both accumulators (caller holds the lock)."""
        peak = self.peak.take()
        self._step_peak = max(self._step_peak, peak)
        self._sample_peak = max(self._sample_peak, peak)
        return peak

    def _torch_cuda(self) -> tuple[float, float]:
        if self.cuda_index is None:
            return NAN, NAN
        import torch

        return (
            float(torch.cuda.memory_allocated(self.cuda_index)),
            float(torch.cuda.memory_reserved(self.cuda_index)),
        )

    def sample_once(self) -> tuple[float, ...]:
        with self._lock:
            self._read_peak()
            peak, self._sample_peak = self._sample_peak, 0
        device_used = self.nvml.device_used()
        process_used = self.nvml.process_used()
        allocated, reserved = self._torch_cuda()
        if self.tracker is not None and getattr(self.tracker, "simulated_device", None) is not None:
            allocated, reserved, process_used = map(float, self.tracker.device_sample())
        row = (
            self.clock() - self.t0,
            float(procmem.rss_bytes()),
            self._read_uss(),
            float(peak),
            float(procmem.system_used_bytes()),
            NAN if device_used is None else float(device_used),
            NAN if process_used is None else float(process_used),
            allocated,
            reserved,
            *self._tracked(),
        )
        self.emit(row)
        return row

    def _read_uss(self) -> float:
        now = self.clock()
        if now - self._uss_at >= USS_INTERVAL_S:
            self._uss = float(procmem.uss_bytes())
            self._uss_at = now
        return self._uss

    def _tracked(self) -> tuple[float, ...]:
        if self.tracker is None:
            return (NAN,) * (1 + len(CATEGORIES))
        by_category = self.tracker.live_by_category  # a copy, up to now
        return (float(sum(by_category)), *map(float, by_category))

    def take_step_peak(self) -> int:
        """The exact peak RSS since the last call (the kernel's mark included)."""
        with self._lock:
            self._read_peak()
            peak, self._step_peak = self._step_peak, 0
            return peak

    def run(self) -> None:
        next_tick = self.clock()
        while not self._halt.is_set():
            self.sample_once()
            next_tick += self.period
            delay = next_tick - self.clock()
            if delay < 0:  # fell behind (GIL); do not burst to catch up
                next_tick = self.clock()
                delay = 0
            self._halt.wait(delay)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=2)
        self.sample_once()  # a last sample at the very end
