"""A comparison: technique sets run one after another, each in a fresh worker.

``Comparison`` is driven by ``poll()``: the CLI calls it in a loop, the window
from its timer, so neither blocks. A fixed list of sets runs in order; the
greedy preset plans its next round from the results so far (the stack plus
each remaining candidate; the best one is kept while it saves at least 2 % of
the stack's peak).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..core.run import Run
from ..core.spec import RunSpec
from ..core.summary import build_summary
from ..session import WorkerSession
from ..session.memory_cap import MemoryCap
from .sets import GREEDY_MIN_SAVING, TechniqueSet, greedy_candidates, parse_set


@dataclass
class SetResult:
    technique_set: TechniqueSet
    run: Run
    estimate: dict | None  # the estimator's prediction, or None with ``estimate_error``
    estimate_error: str = ""

    @property
    def name(self) -> str:
        return self.technique_set.name

    @property
    def ok(self) -> bool:
        return self.run.state == "finished"

    def peak(self) -> int | None:
        """The figure sets are ranked by: the tracked peak, else the peak RSS."""
        summary = build_summary(self.run)
        return summary["peak"]["tracked_bytes"] or summary["peak"]["rss_bytes"]


def _simulable(spec: RunSpec) -> bool:
    """Whether the set's prediction can be its simulation (a generation and an
    untracked run are predicted by the closed form; a simulated set is its own)."""
    return spec.track != "samples" and spec.mode != "generate" and not spec.simulate


def _simulated_estimate(spec: RunSpec, simulated: Run) -> tuple[dict | None, str]:
    """The prediction a simulation makes, with the closed-form terms beside it as the
    explanation of why each category is what it is."""
    closed, why = _predict(spec)
    tracking = (simulated.worker_summary or {}).get("tracking")
    if simulated.state != "finished" or not tracking:
        reason = (simulated.error or {}).get("message", simulated.state)
        return closed, f"simulation did not finish ({reason}); the closed form instead" + (
            f": {why}" if why else "")
    return {"peak_bytes": tracking["tracked_bytes"],
            "by_category": tracking["peak_by_category"], "source": "simulation",
            "closed_form": closed}, ""


def _predict(spec: RunSpec) -> tuple[dict | None, str]:
    from ..estimate import EstimateError, predict

    try:
        return predict(spec).to_dict(), ""
    except (EstimateError, KeyError, ValueError) as exc:
        return None, str(exc)


class Comparison:
    def __init__(self, base: RunSpec, sets: list[TechniqueSet] | None = None,
                 greedy: bool = False,
                 make_session: Callable[[Run], WorkerSession] | None = None,
                 next_run_id: Callable[[], int] | None = None,
                 record_to: str | None = None, memory_cap: MemoryCap | None = None,
                 warm_start: bool = True, simulate_predictions: bool = True) -> None:
        """Run ``sets`` (the first is the baseline) or, with ``greedy``, grow a stack.
        ``record_to``: a folder where each set's run is recorded (to save the whole
        comparison in one file afterwards). ``memory_cap``: each set's (default: a
        share of the memory available when the set starts)."""
        self.memory_cap = memory_cap
        self.warm_start = warm_start
        self.warm = None  # the warm parent each set's worker is forked from (while running)
        self.simulate_predictions = simulate_predictions
        self._simulation: tuple | None = None  # the set being simulated before it runs
        self.base = base.validate()
        self.greedy = greedy
        self.pending: list[TechniqueSet] = list(sets or [TechniqueSet("baseline")])
        if greedy:
            self.pending = [TechniqueSet("baseline")]
        self.results: list[SetResult] = []
        self.record_to = record_to
        self.make_session = make_session or self._recorded_session
        self.session: WorkerSession | None = None
        self.current: SetResult | None = None
        self.cancelled = False
        self.stack = TechniqueSet("baseline")
        self._round: list[SetResult] = []
        self._tried: set[str] = set()
        self._next_id = next_run_id or itertools.count(1).__next__

    # -- progress -------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.current is None and self._simulation is None and (
            self.cancelled or not self.pending)

    @property
    def simulating(self) -> str | None:
        """The name of the set whose step is being simulated before it runs, if any."""
        return None if self._simulation is None else self._simulation[0].name

    def planned(self) -> int:
        return (len(self.results) + (self.current is not None) + (self._simulation is not None)
                + len(self.pending))

    def cancel(self) -> None:
        """Stop the running set and run no more."""
        self.cancelled = True
        self.pending.clear()
        if self._simulation is not None:
            self._simulation[3].request_stop()
            self._simulation = None
        if self.session is not None:
            self.session.request_stop()
        else:
            self._cool_down()

    def kill(self) -> None:
        """End the running set at once (a second Ctrl-C), and run no more."""
        simulation, session = self._simulation, self.session
        self.cancel()
        for running in (simulation[3] if simulation else None, session):
            if running is not None:
                running.kill()

    # -- driving ----------------------------------------------------------------
    def poll(self) -> SetResult | None:
        """Advance: simulate the next set, start it, or collect the running one. Returns
        a set that has just started (so a caller can show it), else None.

        The next set's simulation starts as soon as the running set's measured steps
        are over: it overlaps what a run does after them (its model's size on disk),
        never a measured step."""
        if self.current is not None:
            if not self.session.done.is_set():
                self._simulate_ahead()
                return None
            self.results.append(self.current)
            self._round.append(self.current)
            self.current = self.session = None
            if self.greedy and not self.pending and not self.cancelled:
                self._plan_greedy_round()
        if self._simulation is not None:
            chosen, spec, simulated, session = self._simulation
            if not session.done.is_set():
                return None
            self._simulation = None
            estimate, why = _simulated_estimate(spec, simulated)
            return self._start(chosen, spec, estimate, why)
        if self.cancelled or not self.pending:
            self._cool_down()
            return None
        return self._begin_next()

    def _simulate_ahead(self) -> None:
        """Once the running set's measured steps are over, the next set's simulation."""
        run = self.current.run if self.current is not None else None
        if self._simulation is not None or self.cancelled or not self.pending or \
                run is None or len(run.steps) < run.spec.steps:
            return
        if self.simulate_predictions and _simulable(self.pending[0].spec(self.base)):
            self._begin_next()

    def _begin_next(self) -> SetResult | None:
        """Take the next pending set: simulate it (it starts once simulated), or start
        it at once with the closed-form prediction."""
        if self.cancelled or not self.pending:
            return None
        chosen = self.pending.pop(0)
        self._tried.add(chosen.name)
        spec = chosen.spec(self.base)
        if self.simulate_predictions and _simulable(spec):
            simulated = Run(replace(spec, simulate=True, detail="all", steps=2,
                                    disk_size=False))
            session = WorkerSession(simulated, warm=self._warm(), memory_cap=self.memory_cap)
            session.start()
            self._simulation = (chosen, spec, simulated, session)
            return None
        estimate, why = _predict(spec)
        return self._start(chosen, spec, estimate, why)

    def _start(self, chosen: TechniqueSet, spec: RunSpec, estimate, why: str) -> SetResult:
        run = Run(spec, run_id=self._next_id())
        self.current = SetResult(chosen, run, estimate, why)
        self.session = self.make_session(run)
        self.session.warm = self._warm()
        try:
            self.session.start()
        except OSError as exc:
            run.fail("start", f"could not start the worker: {exc}")
            self.session.done.set()
        return self.current

    def _warm(self):
        """The warm parent, started with the first set (None where it cannot start: each
        set then starts cold, as a fresh worker)."""
        if self.warm is None and self.warm_start:
            from ..session.warm import WarmStart

            try:
                self.warm = WarmStart()
            except OSError:
                self.warm_start = False
        return self.warm

    def _cool_down(self) -> None:
        if self.warm is not None:
            self.warm.close()
            self.warm = None

    def _recorded_session(self, run: Run) -> WorkerSession:
        if self.record_to is None:
            return WorkerSession(run, memory_cap=self.memory_cap)
        from ..snapshot import Recorder

        path = f"{self.record_to}/set-{run.run_id}.memviz"
        run.snapshot_path = path
        return WorkerSession(run, recorder=Recorder(path, run.spec.to_dict(), overwrite=True),
                             memory_cap=self.memory_cap)

    def _plan_greedy_round(self) -> None:
        """After a round: keep its best set if it saved enough, then try the next."""
        stack_result = next((r for r in self.results if r.name == self.stack.name), None)
        stack_peak = stack_result.peak() if stack_result and stack_result.ok else None
        best = None
        for result in self._round:
            if result.name == self.stack.name or not result.ok:
                continue
            peak = result.peak()
            if peak is not None and (best is None or peak < best[0]):
                best = (peak, result)
        self._round = []
        if stack_peak is None:
            return
        if best is not None and best[0] <= stack_peak * (1 - GREEDY_MIN_SAVING):
            self.stack = best[1].technique_set
        elif best is not None or self.stack.name != "baseline":
            return  # nothing left that helps: the stack is final
        self.pending = greedy_candidates(self.base, self.stack, self._tried)

    def run_all(self, on_start: Callable[[SetResult, int, int], None] | None = None,
                interval: float = 0.2) -> list[SetResult]:
        """Block until every set ran (the CLI's loop)."""
        import time

        while not self.finished:
            started = self.poll()
            if started is not None and on_start is not None:
                on_start(started, len(self.results) + 1, self.planned())
            if started is None:
                time.sleep(interval)
        return self.results


def sets_from_texts(texts: list[str]) -> list[TechniqueSet]:
    """The CLI's ``--set`` values; a baseline first unless one was given."""
    sets = [parse_set(t) for t in texts]
    if not any(s.name == "baseline" for s in sets):
        sets.insert(0, TechniqueSet("baseline"))
    else:
        sets.sort(key=lambda s: s.name != "baseline")
    return sets
