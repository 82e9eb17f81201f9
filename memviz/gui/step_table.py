"""The step table: one row per finished step (step, loss, seconds, its tracked peak and
that peak within each phase, peak RSS and GPU)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from ..core.phase_peaks import PHASES, LiveTotals, phase_peaks
from ..core.run import Phase, Run
from .axes import format_bytes

HEADERS = ["step", "loss", "seconds", "tracked peak", "in forward", "in backward",
           "in optimizer", "peak RSS", "peak GPU"]
GPU_COLUMN = 8
PHASE_COLUMNS = (4, 5, 6)
LOSS_NOTE = (
    "The step's loss as the model returned it: the mean over the step's micro-batches "
    "under gradient accumulation, or their sum when transformers' Trainer passes "
    "num_items_in_batch (each micro-batch's loss is then already its share of the "
    "step's), which is the figure the Trainer logs. A script that prints its last "
    "micro-batch's loss, or its loss divided by the accumulation steps, prints "
    "another number for the same step.")
PHASE_NOTE = ("The most tracked bytes live at once while the step was in its {phase} "
              "(what was live as it began counts). A step without every op tracked "
              "(not a detailed step) leaves out its temporaries.")


class StepTable(QTableWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(0, len(HEADERS), parent)
        self.setHorizontalHeaderLabels(HEADERS)
        self.horizontalHeaderItem(1).setToolTip(LOSS_NOTE)
        for column, phase in zip(PHASE_COLUMNS, PHASES, strict=True):
            self.horizontalHeaderItem(column).setToolTip(PHASE_NOTE.format(phase=phase))
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self._run_id: int | None = None

    def show_run(self, run: Run | None) -> None:
        """Append the rows ``run`` gained since the last call (all of them on a switch)."""
        if run is None:
            self.setRowCount(0)
            self._run_id = None
            return
        if run.run_id != self._run_id:
            self.setRowCount(0)
            self._run_id = run.run_id
        with run.lock:
            new = run.steps[self.rowCount():]
            peaks = self._phase_peaks(run, new[0].step if self.rowCount() else 0) \
                if new else {}
        for step in new:
            row = self.rowCount()
            self.insertRow(row)
            cells = [
                str(step.step),
                "—" if step.loss is None else f"{step.loss:.4f}",
                f"{step.seconds:.3f}",
                "—" if step.tracked_peak_bytes is None else format_bytes(step.tracked_peak_bytes),
                *("—" if (step.step, p) not in peaks else format_bytes(peaks[(step.step, p)])
                  for p in PHASES),
                format_bytes(step.peak_rss_bytes),
                "—" if step.peak_gpu_bytes is None else format_bytes(step.peak_gpu_bytes),
            ]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.setItem(row, col, item)
        if new:
            self.scrollToBottom()
        # a run on no GPU has no GPU figure: no column of dashes
        self.setColumnHidden(GPU_COLUMN, not run.spec.device.startswith("cuda"))
        tracked = run.spec.track != "samples"
        for column in (3, *PHASE_COLUMNS):
            self.setColumnHidden(column, not tracked)

    def _phase_peaks(self, run: Run, first_step: int) -> dict[tuple[int, str], int]:
        """Per step and phase, from the allocations: a whole run at once with one sort,
        the steps a live run just ended by their own windows (a step's end never sorts
        the whole run again); a long run opened with a window of its allocations has
        figures for the phases inside that window only."""
        phases = ([p for p in run.phases if p.step >= 0] if first_step == 0
                  else _phases_since(run.phases, first_step))
        window = run.tensors_window
        if window is not None:
            phases = [p for p in phases if window[0] <= p.begin and p.end <= window[1]]
        if first_step == 0:
            return phase_peaks(phases, LiveTotals.of(run.tensors))
        return phase_peaks(phases, run.tensors)


def _phases_since(phases: list[Phase], first_step: int) -> list[Phase]:
    """The phases of ``first_step`` and the steps after it: the end of the list, found
    from the end (phases arrive in step order), so a live run's tick costs the steps
    that just ended, not the whole run's phases."""
    start = len(phases)
    while start and phases[start - 1].step >= first_step:
        start -= 1
    return phases[start:]
