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
from dataclasses import dataclass

from ..core.run import Run
from ..core.spec import RunSpec
from ..core.summary import build_summary
from ..session import WorkerSession
from ..session.memory_cap import MemoryCap
from ..session.warm import WarmStart
from .predictions import Upcomings
from .sets import GREEDY_MIN_SAVING, TechniqueSet, greedy_candidates, parse_set

WAIT_SLICE_S = 0.01  # how often several running workers are each looked at


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


class Comparison:
    def __init__(self, base: RunSpec, sets: list[TechniqueSet] | None = None,
                 greedy: bool = False,
                 make_session: Callable[[Run], WorkerSession] | None = None,
                 next_run_id: Callable[[], int] | None = None,
                 record_to: str | None = None, memory_cap: MemoryCap | None = None,
                 warm_start: bool = True, simulate_predictions: bool = True,
                 warm: WarmStart | None = None) -> None:
        """Run ``sets`` (the first is the baseline) or, with ``greedy``, grow a stack.
        ``record_to``: a folder where each set's run is recorded (to save the whole
        comparison in one file afterwards). ``memory_cap``: each set's (default: a
        share of the memory available when the set starts). ``warm``: a warm parent
        already started (``WarmStart(wait=False)``), which the comparison then owns."""
        self.memory_cap = memory_cap
        self.warm_start = warm_start or warm is not None
        self.warm = warm  # the warm parent each set's worker is forked from (while running)
        # the sets next in line, their steps simulated ahead for the predictions
        self.upcoming = Upcomings(simulate_predictions, self._simulation_session)
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
        return self.current is None and not self.upcoming and (
            self.cancelled or not self.pending)

    @property
    def simulating(self) -> str | None:
        """The names of the sets whose steps are being simulated before they run, if any."""
        names = [u.chosen.name for u in self.upcoming.simulating()]
        return ", ".join(names) if names else None

    def planned(self) -> int:
        return (len(self.results) + (self.current is not None) + len(self.upcoming)
                + len(self.pending))

    def cancel(self) -> None:
        """Stop the running set and run no more."""
        self.cancelled = True
        self.pending.clear()
        self.upcoming.stop()
        if self.session is not None:
            self.session.request_stop()
        else:
            self._cool_down()

    def kill(self) -> None:
        """End the running set at once (a second Ctrl-C), and run no more."""
        self.upcoming.stop(kill=True)
        session = self.session
        self.cancel()
        if session is not None:
            session.kill()

    # -- driving ----------------------------------------------------------------
    def poll(self) -> SetResult | None:
        """Advance: simulate the next sets, start one, or collect the running one.
        Returns a set that has just started (so a caller can show it), else None.

        Simulations never overlap a measured step: the next sets' simulations start as
        soon as the running set's measured steps are over (they overlap what a run does
        after them), and a set starts once its prediction is known and no simulation
        runs."""
        if self.current is not None:
            if not self.session.done.is_set():
                run = self.current.run
                if len(run.steps) >= run.spec.steps:
                    self._take_pending()
                return None
            self.results.append(self.current)
            self._round.append(self.current)
            self.current = self.session = None
            if self.greedy and not self.pending and not self.upcoming and \
                    not self.cancelled:
                self._plan_greedy_round()
        if self.cancelled:
            return self._wind_down()
        self._take_pending()
        if self.cancelled:  # the cancel came while a set was being taken
            return self._wind_down()
        ready = self.upcoming.next_ready()
        if ready is not None:
            return self._start(ready.chosen, ready.spec, ready.estimate, ready.why)
        if not self.upcoming and not self.pending:
            self._cool_down()
        return None

    def _wind_down(self) -> None:
        """After a cancel: a set taken while it ran (Ctrl-C's handler runs between any
        two lines, a simulation's start among them) is dropped, and the warm parent
        closed."""
        self.upcoming.stop()
        self._cool_down()

    def _take_pending(self) -> None:
        if not self.cancelled:
            self.upcoming.fill(self.pending, lambda chosen: chosen.spec(self.base),
                               lambda chosen: self._tried.add(chosen.name))

    def _simulation_session(self, simulated: Run) -> WorkerSession:
        session = WorkerSession(simulated, warm=self._warm(), memory_cap=self.memory_cap)
        session.start()
        return session

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
            try:
                self.warm = WarmStart()
            except OSError:
                self.warm_start = False
        elif self.warm is not None:
            try:
                self.warm.wait_ready()  # one started early may still be importing
            except OSError:
                self.warm, self.warm_start = None, False
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
                interval: float = 0.2,
                on_simulating: Callable[[str], None] | None = None) -> list[SetResult]:
        """Block until every set ran (the CLI's loop). ``on_simulating`` hears the
        names of the sets whose simulations have just started."""
        announced: set[str] = set()
        while not self.finished:
            started = self.poll()
            new = [u.chosen.name for u in self.upcoming.simulating()
                   if u.chosen.name not in announced]
            if new and on_simulating is not None:
                on_simulating(", ".join(new))
            announced.update(new)
            if started is not None and on_start is not None:
                on_start(started, len(self.results) + 1, self.planned())
            if started is None:
                self.wait(interval)
        return self.results

    def wait(self, at_most: float) -> None:
        """Until the running set or any simulation ends, or ``at_most`` seconds (a set's
        steps ending is seen by polling)."""
        import time

        running = [s for s in [self.session, *(u.session for u in self.upcoming.simulating())]
                   if s is not None]
        deadline = time.monotonic() + at_most
        while not any(s.done.is_set() for s in running):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if len(running) == 1:
                running[0].done.wait(left)
            elif running:  # several: each is looked at every slice
                running[0].done.wait(min(left, WAIT_SLICE_S))
            else:
                time.sleep(min(left, WAIT_SLICE_S))


def sets_from_texts(texts: list[str]) -> list[TechniqueSet]:
    """The CLI's ``--set`` values; a baseline first unless one was given."""
    sets = [parse_set(t) for t in texts]
    if not any(s.name == "baseline" for s in sets):
        sets.insert(0, TechniqueSet("baseline"))
    else:
        sets.sort(key=lambda s: s.name != "baseline")
    return sets
