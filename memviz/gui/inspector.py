"""Details of one allocation: what it is, where it came from, how long it lived."""

from __future__ import annotations

import html

import numpy as np
from PySide6.QtWidgets import QTextBrowser

from ..core.categories import CATEGORIES, LABELS
from ..core.run import Run
from .axes import format_bytes

PHASE_NAMES = ("", "load", "forward", "backward", "optimizer", "generate")


def describe(run: Run, row: int) -> dict[str, str]:
    log = run.tensors
    cols = log.rows
    with run.lock:
        get = {name: cols.column(name)[row] for name in cols.names}
        stack = log.stack_text(int(get["stack"])) if get["stack"] >= 0 else []
        dtype = log.string("dtype", int(get["dtype"]))
        shape = log.string("shape", int(get["shape"]))
        device = log.string("device", int(get["device"]))
        module = log.string("module", int(get["module"])) or "(outside any module)"
        op = log.string("op", int(get["op"]))
    freed = not np.isnan(get["t_free"])
    phase = PHASE_NAMES[int(get["phase"])] if 0 <= get["phase"] < len(PHASE_NAMES) else ""
    return {
        "allocation": f"#{row}",
        "bytes": f"{format_bytes(int(get['nbytes']))} ({int(get['nbytes']):,} B)",
        "shape": shape,
        "dtype": dtype,
        "device": device,
        "category": LABELS[CATEGORIES[int(get["category"])]],
        "module": module,
        "op": op,
        "phase": f"{phase or '—'}, step {int(get['step'])}" if get["step"] >= 0 else phase or "—",
        "allocated at": f"{get['t_alloc']:.4f} s",
        "freed at": f"{get['t_free']:.4f} s" if freed else "still live",
        "lifetime": f"{(get['t_free'] - get['t_alloc']) * 1000:.2f} ms" if freed else "—",
        "stack": "\n".join(stack) if stack else
        "(set Tracking to tensors+stacks in the run panel to record stacks)",
    }


class Inspector(QTextBrowser):
    """The allocation last clicked in the selected run; each run keeps its own, so
    selecting another run shows that run's (or none), never the last run's."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setPlaceholderText("Click an allocation to inspect it")
        self.setMinimumWidth(260)
        self.fields: dict[str, str] = {}
        self.run_id: int | None = None  # whose allocation is shown
        self._rows: dict[int, int] = {}  # run id -> the allocation inspected in it

    def follow(self, run: Run | None) -> None:
        """The selected run changed (or is the same): show its inspected allocation."""
        if run is not None and run.run_id == self.run_id:
            return
        row = self._rows.get(run.run_id) if run is not None else None
        if run is not None and row is not None and row < len(run.tensors):
            self.show_allocation(run, row)
        else:
            self.fields = {}
            self.run_id = None
            self.clear()

    def show_allocation(self, run: Run, row: int) -> None:
        self.run_id = run.run_id
        self._rows[run.run_id] = row
        self.fields = describe(run, row)
        rows = "".join(
            f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(v)}</td></tr>"
            for k, v in self.fields.items() if k != "stack")
        stack = html.escape(self.fields["stack"])
        self.setHtml(f"<table cellspacing=3>{rows}</table><p><b>stack</b></p>"
                     f"<pre style='font-size:8pt'>{stack}</pre>")
