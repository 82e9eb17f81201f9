"""Each set's prediction before it runs: its step simulated on fake tensors (the same
bytes the measured run will track), or the closed form where a set cannot be simulated.

A simulation is CPU-bound and single-threaded, and a comparison's measured steps must
run alone, so simulations run ahead of their sets' turns, several at once (one a
core, up to ``MAX_LANES``), in the gaps between measured steps: a 4-set comparison on
2 cores waits for two rounds of simulation instead of four.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..core.run import Run
from ..core.spec import RunSpec
from ..session import WorkerSession
from .sets import TechniqueSet

MAX_LANES = 4  # each simulation is a worker of a few hundred MB


def simulation_lanes() -> int:
    """How many simulations run at once: one a core this process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_LANES, cores))


def simulable(spec: RunSpec) -> bool:
    """Whether the set's prediction can be its simulation (a generation and an
    untracked run are predicted by the closed form; a simulated set is its own)."""
    return spec.track != "samples" and spec.mode != "generate" and not spec.simulate


def simulated_estimate(spec: RunSpec, simulated: Run) -> tuple[dict | None, str]:
    """The prediction a simulation makes, with the closed-form terms beside it as the
    explanation of why each category is what it is."""
    closed, why = closed_form(spec)
    tracking = (simulated.worker_summary or {}).get("tracking")
    if simulated.state != "finished" or not tracking:
        reason = (simulated.error or {}).get("message", simulated.state)
        return closed, f"simulation did not finish ({reason}); the closed form instead" + (
            f": {why}" if why else "")
    return {"peak_bytes": tracking["tracked_bytes"],
            "by_category": tracking["peak_by_category"], "source": "simulation",
            "closed_form": closed}, ""


def closed_form(spec: RunSpec) -> tuple[dict | None, str]:
    from ..estimate import EstimateError, predict

    try:
        return predict(spec).to_dict(), ""
    except (EstimateError, KeyError, ValueError) as exc:
        return None, str(exc)


@dataclass
class Upcoming:
    """A set taken from the pending list: its prediction being simulated, or ready."""
    chosen: TechniqueSet
    spec: RunSpec
    simulated: Run | None = None
    session: WorkerSession | None = None  # while the simulation runs
    estimate: dict | None = None
    why: str = ""

    @property
    def simulating(self) -> bool:
        return self.session is not None

    def collect(self) -> None:
        """Once its simulation has ended: the prediction it makes."""
        if self.session is not None and self.session.done.is_set():
            self.session = None
            self.estimate, self.why = simulated_estimate(self.spec, self.simulated)


class Upcomings:
    """The sets next in line, in their order, each with its prediction."""

    def __init__(self, simulate: bool, start_simulation: Callable[[Run], WorkerSession],
                 lanes: int | None = None) -> None:
        self.simulate = simulate
        self.start_simulation = start_simulation
        self.lanes = lanes or simulation_lanes()
        self.queue: list[Upcoming] = []

    def __len__(self) -> int:
        return len(self.queue)

    def simulating(self) -> list[Upcoming]:
        return [u for u in self.queue if u.simulating]

    def take(self, chosen: TechniqueSet, spec: RunSpec) -> None:
        """Queue a set: its simulation starts now, or the closed form predicts it."""
        upcoming = Upcoming(chosen, spec)
        if self.simulate and simulable(spec):
            upcoming.simulated = Run(replace(spec, simulate=True, detail="all", steps=2,
                                             disk_size=False))
            try:
                upcoming.session = self.start_simulation(upcoming.simulated)
            except OSError as exc:  # no worker could start: the set is still predicted
                upcoming.simulated.fail("start", f"could not start the worker: {exc}")
                upcoming.estimate, upcoming.why = simulated_estimate(spec, upcoming.simulated)
        else:
            upcoming.estimate, upcoming.why = closed_form(spec)
        self.queue.append(upcoming)

    def fill(self, pending: list[TechniqueSet], spec_of: Callable[[TechniqueSet], RunSpec],
             taken: Callable[[TechniqueSet], None]) -> None:
        """Take pending sets while a lane is free (a set that is not simulated takes none
        and waits in line); a simulation that has ended frees its lane at once."""
        self._collect()
        while pending and len(self.simulating()) < self.lanes:
            chosen = pending.pop(0)
            taken(chosen)
            self.take(chosen, spec_of(chosen))

    def _collect(self) -> None:
        for upcoming in self.queue:
            upcoming.collect()

    def next_ready(self) -> Upcoming | None:
        """The first in line, once its prediction is known and no simulation still runs
        (the set's measured steps must run alone)."""
        self._collect()
        if self.queue and not self.simulating():
            return self.queue.pop(0)
        return None

    def stop(self, kill: bool = False) -> None:
        """Stop every simulation and forget the line."""
        for upcoming in self.simulating():
            if kill:
                upcoming.session.kill()
            else:
                upcoming.session.request_stop()
        self.queue.clear()
