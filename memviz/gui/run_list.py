"""The list of runs: select one to see it; tick others to overlay them."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QListWidget, QListWidgetItem

from ..core.run import Run
from ..core.spec import technique_label

RUN_ID_ROLE = Qt.ItemDataRole.UserRole


def describe(run: Run) -> str:
    state = run.state
    if run.steps:
        state += f", {run.spec.steps_done(len(run.steps))}"
    spec = run.spec
    techniques = " + ".join(technique_label(t) for t in spec.techniques)
    if spec.mode == "train" and spec.optimizer != "adamw":
        techniques = " + ".join(filter(None, [techniques, spec.optimizer]))
    used = f" [{techniques}]" if techniques else ""
    rank = f" rank {run.rank}" if run.rank or run.ranks else ""
    if spec.program:
        return f"#{run.run_id} {spec.program}{used} — {state}"
    imported = run.environment.get("imported") if isinstance(run.environment, dict) else None
    if imported:  # a PyTorch snapshot: no spec of memviz's made it
        return f"#{run.run_id} {spec.model} {spec.device} — {imported}"
    where = "" if spec.device == "cpu" and not spec.simulate else \
        f" {spec.device}" + (" (simulated)" if spec.simulate else "")
    return (f"#{run.run_id}{rank} {spec.model} {spec.mode} b{spec.batch_size}×{spec.seq_len}"
            f"{where}{used} — {state}")


def _tooltip(text: str) -> str:
    """The whole description (a long one is cut off in the list) and how to use the list."""
    return f"{text}\nSelect to show this run; tick other runs to overlay them"


class RunList(QListWidget):
    shown_changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.itemChanged.connect(lambda _item: self.shown_changed.emit())
        self.currentItemChanged.connect(lambda *_: self.shown_changed.emit())
        self._texts: dict[int, str] = {}

    def add_run(self, run: Run, select: bool = True) -> None:
        item = QListWidgetItem(describe(run))
        item.setData(RUN_ID_ROLE, run.run_id)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Unchecked)
        item.setToolTip(_tooltip(describe(run)))
        self.blockSignals(True)
        self.addItem(item)
        self.blockSignals(False)
        if select:
            self.setCurrentItem(item)

    def refresh(self, runs: dict[int, Run]) -> None:
        for row in range(self.count()):
            item = self.item(row)
            run = runs[item.data(RUN_ID_ROLE)]
            text = describe(run)
            if self._texts.get(run.run_id) != text:
                self._texts[run.run_id] = text
                self.blockSignals(True)
                item.setText(text)
                item.setToolTip(_tooltip(text))
                self.blockSignals(False)

    def current_run_id(self) -> int | None:
        item = self.currentItem()
        return None if item is None else item.data(RUN_ID_ROLE)

    def shown_run_ids(self) -> list[int]:
        """The current run first, then every ticked one."""
        current = self.current_run_id()
        ticked = [self.item(r).data(RUN_ID_ROLE) for r in range(self.count())
                  if self.item(r).checkState() == Qt.CheckState.Checked]
        ids = [current] if current is not None else []
        return ids + [i for i in ticked if i != current]
