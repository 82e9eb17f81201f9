"""Run control: starting a run or a comparison from the run panel, stopping it (once:
at the next phase; twice: at once), asking for a step in full, and recording every
run to the runs folder. The window's menus, buttons and tests call these through
the window."""

from __future__ import annotations

import os
import time
from dataclasses import replace

from ..core.run import Run
from ..core.spec import RunSpec, SpecError
from ..session import WorkerSession
from ..techniques import preflight
from .comparison_view import sets_from_text
from .file_actions import runs_dir


class RunControl:
    def __init__(self, window) -> None:
        self.window = window
        self._stopping: set[int] = set()  # runs asked to stop once

    def recorder_for(self, run: Run):
        """Every run is recorded, so nothing measured is lost; failing that, it still runs."""
        from ..snapshot import Recorder

        folder = runs_dir()
        path = folder / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{run.run_id}.memviz"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            recorder = Recorder(path, run.spec.to_dict())
        except OSError as exc:
            run.add_log("warning", f"not recorded: {exc}")
            return None
        run.add_log("info", f"recording to {path}")
        run.snapshot_path = str(path)
        return recorder

    def active_run(self) -> Run | None:
        return next((r for r in self.window.runs.values() if not r.finished and r.rank == 0), None)

    def busy(self) -> bool:
        """A run is going, or a comparison is (which may be simulating a set's step
        before the set's run joins the list)."""
        return self.active_run() is not None or (
            self.window.comparison is not None and not self.window.comparison.finished)

    def adopt(self, run: Run, session) -> None:
        """A run that began elsewhere (a program that connected) joins the list; it is
        shown only if no other run is going (never taken from one being watched)."""
        watching = self.active_run() is not None
        self.window.runs[run.run_id] = run
        self.window.sessions[run.run_id] = session
        self.window.run_list.add_run(run, select=not watching)
        self.window._shown_changed()

    def start_run(self, spec: RunSpec | None = None, session_for=None) -> Run | None:
        """Run ``spec`` (the run panel's) in a worker started here, or in the session
        ``session_for(run, memory_cap)`` makes (a worker attached to)."""
        self.window.error_banner.user_acted()
        if self.busy():
            self.window.error_banner.action_error("A run is going: stop it (Esc) or wait for it")
            return None
        spec = spec or self.window.run_panel.spec()
        try:
            # what cannot run is refused before a worker starts (a remote worker's
            # device is its own to check)
            preflight(spec, check_device=session_for is None and not spec.simulate)
            cap = self.window.run_panel.cap()
        except SpecError as exc:
            self.window.error_banner.action_error(f"Cannot run: {exc}")
            return None
        run = Run(spec, run_id=self.window.new_run_id())
        session = session_for(run, cap) if session_for else \
            WorkerSession(run, recorder=self.recorder_for(run), memory_cap=cap)
        self.window.runs[run.run_id] = run
        self.window.sessions[run.run_id] = session
        try:
            session.start()
        except OSError as exc:
            run.fail("start", f"could not start the worker: {exc}")
        self.window.run_list.add_run(run)
        self.window._shown_changed()
        self.window.run_panel.set_running(True)
        return run

    def start_comparison(self, text: str, greedy: bool = False):
        """Run technique sets on the workload chosen in the run panel, one by one."""
        from ..compare import Comparison, each_alone
        from ..compare.sets import runnable

        self.window.error_banner.user_acted()
        if self.busy():
            self.window.error_banner.action_error(
                "A run is going: stop it or wait before comparing")
            return None
        base = replace(self.window.run_panel.spec(), techniques=[])
        try:
            base.validate()
            sets = each_alone(base) if text == "each" else sets_from_text(text)
            for candidate in [] if greedy else sets:
                why = runnable(base, candidate)
                if why:
                    raise SpecError(f"set {candidate.name!r}: {why}")
        except SpecError as exc:
            self.window.error_banner.action_error(f"Cannot compare: {exc}")
            return None

        def make_session(run: Run) -> WorkerSession:
            self.window.runs[run.run_id] = run
            self.window.run_list.add_run(run, select=False)
            session = WorkerSession(run, recorder=self.recorder_for(run))
            self.window.sessions[run.run_id] = session
            return session

        self.window.comparison = Comparison(base, sets, greedy=greedy, make_session=make_session,
                                     next_run_id=self.window.new_run_id)
        self.window.tabs.setCurrentWidget(self.window.comparison_view)
        self.window.comparison.poll()
        return self.window.comparison

    def cancel_comparison(self) -> None:
        if self.window.comparison is not None:
            self.window.comparison.cancel()

    def stopping(self, run: Run) -> bool:
        """Asked to stop once, and not ended yet."""
        return run.run_id in self._stopping and not run.finished

    def stop_run(self) -> None:
        """Esc: stop the running run (twice: at once), the comparison, and any open of a
        large snapshot under way."""
        cancelled = self.window.opener.background_opens.cancel()
        if cancelled:
            self.window.state_label.setText(
                f"Cancelled opening {cancelled} snapshot{'s' if cancelled > 1 else ''}")
        if self.window.comparison is not None and not self.window.comparison.finished:
            self.window.comparison.cancel()
        run = self.active_run()
        if run is None:
            return
        session = self.window.sessions[run.run_id]
        if run.run_id in self._stopping:  # asked twice: at once
            session.kill()
            self.window.state_label.setText(f"Run #{run.run_id} ended at once")
            return
        self._stopping.add(run.run_id)
        session.request_stop()
        self.window.state_label.setText(f"Stopping run #{run.run_id} at its next phase (Esc again: "
                                 "at once)…")

    def record_next_step_in_full(self) -> None:
        """The running run's next step is seen op by op (every temporary), whatever its
        detail policy says."""
        run = self.active_run()
        session = self.window.sessions.get(run.run_id) if run is not None else None
        if session is None or not hasattr(session, "request_detail"):
            self.window.error_banner.action_error("No run is going here to record in full")
            return
        session.request_detail()
        self.window.state_label.setText(f"Run #{run.run_id}: its next step is recorded in full")
