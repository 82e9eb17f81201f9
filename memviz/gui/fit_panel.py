"""What fits, in the window: the largest batch under a limit, or the sets that fit.

The search runs real workers one after another, so it runs on a thread of its
own; the panel reads the probes it has finished on a timer (no Qt object is
touched from that thread).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout

from ..compare.fit import rank_sets, search_for
from ..core.spec import RunSpec
from .axes import format_bytes


class FitPanel(QGroupBox):
    def __init__(self, base_spec: Callable[[], RunSpec], parent=None) -> None:
        super().__init__("What fits", parent)
        self.base_spec = base_spec
        self.limit = QSpinBox()
        self.limit.setRange(64, 1 << 22)
        self.limit.setSuffix(" MiB")
        self.limit.setValue(2048)
        self.batch_button = QPushButton("Largest batch")
        self.sets_button = QPushButton("Sets that fit this batch")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.result = QLabel("Confirmed by real runs, each killed if it passes the limit "
                             "(RSS on CPU, GPU memory on CUDA).")
        self.result.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Limit"))
        for w in (self.limit, self.batch_button, self.sets_button, self.cancel_button):
            row.addWidget(w)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.result)
        self.batch_button.clicked.connect(lambda: self.start(sets=False))
        self.sets_button.clicked.connect(lambda: self.start(sets=True))
        self.cancel_button.clicked.connect(lambda: self._cancel.set())
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._lines: list[str] = []
        self._answer = ""
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._show)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, sets: bool) -> None:
        if self.running:
            return
        base = self.base_spec()
        limit = self.limit.value() << 20
        self._cancel.clear()
        self._lines, self._answer = [], ""
        self._thread = threading.Thread(target=self._search, args=(base, limit, sets),
                                        daemon=True, name="memviz-fit")
        self._thread.start()
        self._set_running(True)
        self._timer.start(200)

    def _search(self, base: RunSpec, limit: int, sets: bool) -> None:
        def heard(probe) -> None:
            verdict = "fits" if probe.fits else "does not fit"
            figure = format_bytes(probe.peak_bytes) if probe.peak_bytes is not None else \
                f"simulated {format_bytes(probe.predicted_bytes)}"
            self._lines.append(f"batch {probe.value}: {figure} {verdict}")

        try:
            search = search_for(base, limit, on_probe=heard, cancel=self._cancel, upper=1024)
            result = search.run()
            if not sets:
                self._answer = _largest_batch(result, base, search)
                return
            ranked = rank_sets(base, limit, result.overhead_bytes or 0, cancel=self._cancel)
            fitting = [f"{r.technique_set.name} ({r.step_factor:.2f}× time"
                       + ("" if r.verified is None else
                          f", {'fits' if r.verified.fits else 'does not fit'}") + ")"
                       for r in ranked[:5]]
            self._answer = (f"Sets predicted to fit batch {base.batch_size} under "
                            f"{format_bytes(limit)}, cheapest first: "
                            + ("; ".join(fitting) or "none"))
        except Exception as exc:  # shown to the user, never lost in a thread
            self._answer = f"The search failed: {exc}"

    def _show(self) -> None:
        text = ", ".join(self._lines[-6:])
        self.result.setText(self._answer or f"Searching… {text}")
        if not self.running:
            self._timer.stop()
            self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.batch_button.setEnabled(not running)
        self.sets_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)


def _largest_batch(result, base: RunSpec, search) -> str:
    """The answer, with the figure it rests on: the largest batch's peak (measured, or
    simulated) against the limit."""
    limit = format_bytes(result.limit_bytes)
    if result.largest is None:
        first = next((p for p in result.probes if p.value == 1), None)
        return f"Largest batch under {limit}: None (1 did not fit" + (
            f": {_figure(first)})" if first is not None else ")")
    probes = [p for p in result.probes if p.value == result.largest]
    text = f"Largest batch under {limit}: {result.largest}"
    if probes:
        text += f", {_figure(probes[-1])}"
    if result.refused is not None:
        refused = [p for p in result.probes if p.value == result.refused]
        text += f" ({result.refused} did not fit" + (
            f": {_figure(refused[-1])})" if refused else ")")
    if base.simulate:
        confirmed = getattr(search, "confirmed", None)
        text += "; simulated" + (", confirmed by real runs" if confirmed else
                                 f" on {base.device}, not confirmed by real runs")
    elif result.predicted is not None:
        text += f"; the estimator said {result.predicted}"
    return text


def _figure(probe) -> str:
    if probe.peak_bytes is not None:
        return f"{format_bytes(probe.peak_bytes)} measured"
    if probe.predicted_bytes is not None:
        return f"{format_bytes(probe.predicted_bytes)} simulated"
    return probe.message or "no figure"
