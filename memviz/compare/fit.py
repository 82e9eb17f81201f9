"""What fits: the largest batch (or sequence) under a memory cap, and the technique sets
that make a workload fit, each answer confirmed by real runs under that cap.

The estimator predicts tracked tensor bytes; a process also holds its libraries
and the allocator's slack, so a first probe run measures that overhead (peak
RSS minus tracked peak; on CUDA, reserved minus tracked) and every prediction
adds it. The search starts at the estimator's answer and moves by real runs,
each in a throwaway worker that is killed if it passes the cap, until it holds
a value that ran under the cap and the next one up that did not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from ..core.run import Run
from ..core.spec import RunSpec, SpecError
from ..core.summary import build_summary
from ..session import WorkerSession
from ..session.memory_cap import MemoryCap
from .sets import GREEDY_CANDIDATES, TechniqueSet, parse_set, runnable

PROBE_STEPS = 2
# What each technique is expected to cost, for ranking before anything runs: step time
# factor and a quality note (from docs/techniques.md's measurements on the default model).
EXPECTED_COST = {
    "amp": (1.3, "none measurable"), "checkpointing": (1.3, "none"),
    "grad-accum": (1.1, "none (same effective batch)"), "lora": (0.9, "fewer trainable weights"),
    "optimizer=adafactor": (1.0, "factored second moments"),
    "optimizer=adamw-8bit": (1.1, "8-bit optimizer state"),
    "low-precision": (1.2, "bf16 weights"), "quantize": (1.4, "int8 frozen base"),
}


@dataclass
class Probe:
    """One real run of the search."""

    value: int
    fits: bool
    peak_bytes: int | None
    predicted_bytes: int | None
    message: str = ""
    seconds: float | None = None  # the probe's wall time, from asking to its answer
    outside_steps: float | None = None  # of which not in its steps (start, load, wind-up)

    def timed(self, run: Run, started: float) -> Probe:
        """This probe with its time and the share of it outside the run's steps."""
        self.seconds = time.monotonic() - started
        self.outside_steps = max(self.seconds - sum(s.seconds for s in run.steps), 0.0)
        return self


@dataclass
class FitResult:
    dimension: str
    limit_bytes: int
    largest: int | None  # the largest value that ran under the cap (None: not even the least)
    refused: int | None  # the next value up, which did not
    predicted: int | None  # the estimator's answer before any run
    overhead_bytes: int | None
    probes: list[Probe] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"dimension": self.dimension, "limit_bytes": self.limit_bytes,
                "largest": self.largest, "refused": self.refused, "predicted": self.predicted,
                "overhead_bytes": self.overhead_bytes,
                "probes": [p.__dict__ for p in self.probes]}


def measured_peak(run: Run, summary: dict | None = None) -> int | None:
    """The figure the cap applies to: peak RSS on CPU, reserved/GPU memory on CUDA."""
    summary = summary or build_summary(run)
    if run.spec.device.startswith("cuda"):
        return summary["peak"]["gpu_bytes"]
    return summary["peak"]["rss_bytes"]


def run_capped(spec: RunSpec, limit: int, cancel: threading.Event | None = None,
               warm=None) -> Run:
    """Run ``spec`` in a fresh worker (forked from ``warm``, a WarmStart, if given) that
    is killed if its memory passes ``limit``."""
    run = Run(spec)
    session = WorkerSession(run, memory_cap=MemoryCap(limit, spec.device.startswith("cuda")),
                            warm=warm)
    session.start()
    while not session.wait(0.2):
        if cancel is not None and cancel.is_set():
            session.stop()
    return run


def _predict_tracked(spec: RunSpec) -> int | None:
    from ..estimate import EstimateError, predict

    try:
        return predict(spec).peak_bytes
    except (EstimateError, KeyError, ValueError):
        return None


def simulated_peak(run: Run, summary: dict | None = None) -> int | None:
    """What a simulated run says the cap would see: on CUDA the caching allocator's
    reserved bytes plus the CUDA context and cuBLAS workspace (assumed); on CPU the
    tracked peak plus the runtime (RSS before the model loaded)."""
    from ..core.story import runtime_bytes

    summary = summary or build_summary(run)
    if run.state != "finished":
        return None
    if run.spec.device.startswith("cuda"):
        model = summary.get("simulated_cuda") or {}
        return model.get("process_peak")
    tracked = summary["peak"]["tracked_bytes"]
    runtime = runtime_bytes(run)
    return None if tracked is None or runtime is None else int(tracked + runtime)


def simulate_spec(spec: RunSpec, warm=None) -> Run:
    """``spec`` on fake tensors, in a worker (forked from ``warm`` if given)."""
    run = Run(replace(spec, simulate=True, track="tensors", detail="all",
                      disk_size=False))
    session = WorkerSession(run, warm=warm)
    session.start()
    session.wait()
    return run


CONFIRM_RUNS = 5  # real runs at most, to confirm a simulated boundary


class SimulatedFit:
    """The largest ``dimension`` whose simulated step fits under ``limit``: any batch,
    any sequence, any device size, in seconds a probe; then, where the hardware is here
    (the CPU), the boundary confirmed by real runs under the cap."""

    def __init__(self, base: RunSpec, limit: int, dimension: str = "batch_size",
                 upper: int = 1 << 16, on_probe: Callable[[Probe], None] | None = None,
                 confirm: bool = True, cancel: threading.Event | None = None) -> None:
        self.base = replace(base, steps=PROBE_STEPS, simulate=False).validate()
        self.cancel = cancel or threading.Event()
        self.limit = limit
        self.dimension = dimension
        self.upper = upper
        self.on_probe = on_probe
        self.confirm = confirm and self.base.device == "cpu"
        self.simulated: dict[int, Probe] = {}
        self.confirmed: list[Probe] = []
        self.warm = None

    def _spec(self, value: int) -> RunSpec:
        return replace(self.base, **{self.dimension: value})

    def simulate(self, value: int) -> Probe:
        if self.cancel.is_set():  # every probe from here on ends the search
            return Probe(value, False, None, None, "cancelled")
        if value not in self.simulated:
            started = time.monotonic()
            run = simulate_spec(self._spec(value), self.warm)
            peak = simulated_peak(run)
            fits = peak is not None and peak <= self.limit
            message = "" if fits else (run.error or {}).get("message") or \
                f"simulated {peak / (1 << 20):,.0f} MiB"
            self.simulated[value] = Probe(value, fits, None, peak, message).timed(run, started)
            if self.on_probe is not None:
                self.on_probe(self.simulated[value])
        return self.simulated[value]

    def run(self) -> FitResult:
        from ..session.warm import WarmStart

        try:
            self.warm = WarmStart()
        except OSError:
            self.warm = None
        try:
            return self._search()
        finally:
            if self.warm is not None:
                self.warm.close()

    def _search(self) -> FitResult:
        result = FitResult(self.dimension, self.limit, None, None, None, None)
        if not self.simulate(1).fits:
            result.refused = 1
        else:
            lo, hi = 1, 2
            while hi <= self.upper and self.simulate(hi).fits:  # 1, 2, 4, … until one fails
                lo, hi = hi, hi * 2
            hi = min(hi, self.upper + 1)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if self.simulate(mid).fits else (lo, mid)
            result.predicted = lo
            result.largest, result.refused = lo, hi if hi <= self.upper else None
            if self.confirm:
                self._confirm(result)
        result.probes = [*self.simulated.values(), *self.confirmed]
        return result

    def _confirm(self, result: FitResult) -> None:
        """Real runs at the simulated boundary, under the cap: the answer is what they say.
        Down from the simulated largest while reality refuses; if it fits at once, the
        value above it once too (a simulation can be cautious)."""
        value = result.largest
        while value >= 1 and len(self.confirmed) < CONFIRM_RUNS:
            if self._real(value).fits:
                break
            result.refused, value = value, value - 1
        else:
            result.largest = None
            return
        walked = value != result.largest
        result.largest = value
        if not walked and result.refused == value + 1 and self._real(value + 1).fits:
            result.largest, result.refused = value + 1, None

    def _real(self, value: int) -> Probe:
        started = time.monotonic()
        run = run_capped(self._spec(value), self.limit, None, self.warm)
        peak = measured_peak(run)
        fits = run.state == "finished" and peak is not None and peak <= self.limit
        probe = Probe(value, fits, peak, self.simulated.get(value, Probe(0, False, None, None,
                                                                          "")).predicted_bytes,
                      "" if fits else (run.error or {}).get("message", run.state)
                      ).timed(run, started)
        self.confirmed.append(probe)
        if self.on_probe is not None:
            self.on_probe(probe)
        return probe


class FitSearch:
    """The largest ``dimension`` (batch_size or seq_len) of ``base`` that runs under
    ``limit`` bytes. ``on_probe`` hears of every real run as it ends."""

    def __init__(self, base: RunSpec, limit: int, dimension: str = "batch_size",
                 upper: int = 4096, on_probe: Callable[[Probe], None] | None = None,
                 cancel: threading.Event | None = None) -> None:
        if dimension not in ("batch_size", "seq_len"):
            raise SpecError("the fit searches batch_size or seq_len")
        self.base = replace(base, steps=PROBE_STEPS).validate()
        self.limit = limit
        self.dimension = dimension
        self.upper = upper
        self.on_probe = on_probe
        self.cancel = cancel or threading.Event()
        self.probes: dict[int, Probe] = {}
        self.overhead: int | None = None  # measured by the first run that finishes
        self.warm = None  # the warm parent the probes fork from, while searching

    def _spec(self, value: int) -> RunSpec:
        return replace(self.base, **{self.dimension: value})

    def probe(self, value: int) -> Probe:
        if value in self.probes:
            return self.probes[value]
        spec = self._spec(value)
        started = time.monotonic()
        predicted = _predict_tracked(spec)
        run = run_capped(spec, self.limit, self.cancel, self.warm)
        summary = build_summary(run)
        peak = measured_peak(run, summary)
        fits = run.state == "finished" and peak is not None and peak <= self.limit
        tracked = summary["peak"]["tracked_bytes"]
        if self.overhead is None and fits and tracked:
            self.overhead = peak - tracked
        message = "" if fits else (run.error or {}).get("message", run.state)
        result = Probe(value, fits, peak, None if predicted is None or self.overhead is None
                       else predicted + self.overhead, message).timed(run, started)
        self.probes[value] = result
        if self.on_probe is not None:
            self.on_probe(result)
        return result

    def predicted_largest(self, overhead: int) -> int | None:
        """The estimator's answer: the largest value whose prediction fits (bisection)."""
        lo, hi = 0, self.upper
        if _predict_tracked(self._spec(1)) is None:
            return None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _predict_tracked(self._spec(mid)) + overhead <= self.limit:
                lo = mid
            else:
                hi = mid - 1
        return lo or None

    def run(self) -> FitResult:
        """The search, its probes forked from one warm parent."""
        from ..session.warm import WarmStart

        try:
            self.warm = WarmStart()
        except OSError:
            self.warm = None
        try:
            return self._search()
        finally:
            if self.warm is not None:
                self.warm.close()

    def _search(self) -> FitResult:
        first = self.probe(1)
        overhead = self.overhead
        result = FitResult(self.dimension, self.limit, None, None, None, overhead)
        if not first.fits:
            result.refused = 1
            result.probes = list(self.probes.values())
            return result
        guess = self.predicted_largest(overhead) if overhead is not None else None
        result.predicted = guess
        fits, fails = 1, None
        value, step = max(2, guess or 2), 1
        if self.probe(value).fits:  # the estimate held: walk up 1, 2, 4, …
            fits = value
            while fails is None and not self.cancel.is_set() and fits + step <= self.upper:
                if self.probe(fits + step).fits:
                    fits, step = fits + step, step * 2
                else:
                    fails = fits + step
        else:  # it did not: walk down 1, 2, 4, … (1 is known to fit)
            fails = value
            while not self.cancel.is_set() and fails - step > fits:
                if self.probe(fails - step).fits:
                    fits = fails - step
                    break
                fails, step = fails - step, step * 2
        while fails is not None and fails - fits > 1 and not self.cancel.is_set():
            mid = (fits + fails) // 2
            if self.probe(mid).fits:
                fits = mid
            else:
                fails = mid
        result.largest, result.refused = fits, fails
        result.probes = sorted(self.probes.values(), key=lambda p: p.value)
        return result


@dataclass
class RankedSet:
    technique_set: TechniqueSet
    predicted_bytes: int | None
    step_factor: float
    quality: str
    verified: Probe | None = None


def candidate_sets(base: RunSpec) -> list[TechniqueSet]:
    """Each greedy candidate alone, and every pair of them that can run together."""
    singles = [parse_set(n) for n in GREEDY_CANDIDATES]
    pairs = [a.plus(b) for i, a in enumerate(singles) for b in singles[i + 1:]]
    return [s for s in [TechniqueSet("baseline"), *singles, *pairs]
            if runnable(base, s) is None]


def _cost(technique_set: TechniqueSet) -> tuple[float, str]:
    factor, notes = 1.0, []
    keys = [t["name"] for t in technique_set.techniques] + [
        f"{k}={v}" for k, v in technique_set.options.items()]
    for key in keys:
        f, note = EXPECTED_COST.get(key, (1.0, "unknown"))
        factor *= f
        notes.append(f"{key}: {note}")
    return factor, "; ".join(notes) or "none"


def rank_sets(base: RunSpec, limit: int, overhead: int, verify: int = 3,
              on_probe: Callable[[RankedSet], None] | None = None,
              cancel: threading.Event | None = None) -> list[RankedSet]:
    """Technique sets predicted to fit under ``limit``, cheapest expected cost first;
    the first ``verify`` are run under the cap to confirm."""
    ranked = []
    for candidate in candidate_sets(base):
        predicted = _predict_tracked(candidate.spec(base))
        factor, quality = _cost(candidate)
        if predicted is not None and predicted + overhead <= limit:
            ranked.append(RankedSet(candidate, predicted + overhead, factor, quality))
    ranked.sort(key=lambda r: (r.step_factor, r.predicted_bytes))
    for entry in ranked[:verify]:
        if cancel is not None and cancel.is_set():
            break
        spec = replace(entry.technique_set.spec(base), steps=PROBE_STEPS)
        if base.simulate:  # confirmed by a simulated step: the device may not be here
            run = simulate_spec(spec)
            peak = simulated_peak(run)
        else:
            run = run_capped(spec, limit, cancel)
            peak = measured_peak(run)
        entry.verified = Probe(base.batch_size, run.state == "finished" and peak is not None
                               and peak <= limit, peak, entry.predicted_bytes,
                               (run.error or {}).get("message", ""))
        if on_probe is not None:
            on_probe(entry)
    return ranked


def search_for(base: RunSpec, limit: int, dimension: str = "batch_size", *,
               on_probe: Callable[[Probe], None] | None = None,
               cancel: threading.Event | None = None, upper: int | None = None,
               confirm: bool = True) -> FitSearch | SimulatedFit:
    """The search ``base`` asks for: on fake tensors (and, on CUDA, the allocator's
    model) when it is a simulation, else by real runs under the cap."""
    limits = {} if upper is None else {"upper": upper}
    if base.simulate:
        return SimulatedFit(base, limit, dimension, on_probe=on_probe, confirm=confirm,
                            cancel=cancel, **limits)
    return FitSearch(base, limit, dimension, on_probe=on_probe, cancel=cancel, **limits)
