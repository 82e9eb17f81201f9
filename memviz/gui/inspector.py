"""Details of one allocation: what it is, where it came from, how long it lived."""

from __future__ import annotations

import html

import numpy as np
from PySide6.QtWidgets import QTextBrowser

from ..core.categories import CATEGORIES, LABELS
from ..core.run import Run
from .axes import format_bytes

PHASE_NAMES = ("", "load", "forward", "backward", "optimizer", "generate")


def describe(run: Run, row: int, native: bool = False) -> dict[str, str]:
    """The allocation's fields; ``native``: its stack's C++ frames too."""
    log = run.tensors
    cols = log.rows
    with run.lock:
        get = {name: cols.column(name)[row] for name in cols.names}
        stack_id = int(get["stack"])
        stack = log.stack_text(stack_id, native) if stack_id >= 0 else []
        hidden = len(log.stack_text(stack_id, True)) - len(log.stack_text(stack_id)) \
            if stack_id >= 0 and not native else 0
        inferred = run.category_inferred is not None and row < len(run.category_inferred) \
            and bool(run.category_inferred[row])
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
        "category": LABELS[CATEGORIES[int(get["category"])]] + (
            " (inferred from its frames and lifetime)" if inferred else ""),
        "module": module,
        "op": op,
        "phase": f"{phase or '—'}, step {int(get['step'])}" if get["step"] >= 0 else phase or "—",
        "allocated at": f"{get['t_alloc']:.4f} s",
        "freed at": f"{get['t_free']:.4f} s" if freed else "still live",
        "lifetime": f"{(get['t_free'] - get['t_alloc']) * 1000:.2f} ms" if freed else "—",
        "stack": "\n".join(stack) if stack else
        "(only C++ frames: made on autograd's or the allocator's own thread)" if hidden else
        "(set Tracking to tensors+stacks in the run panel to record stacks)",
        "native frames": str(hidden),
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
        self.native = False  # a snapshot's C++ frames shown too
        self._shown: Run | None = None
        self.setOpenLinks(False)
        self.anchorClicked.connect(self._toggle_native)

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
        self._shown = run
        self._rows[run.run_id] = row
        self.fields = describe(run, row, self.native)
        rows = "".join(
            f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(v)}</td></tr>"
            for k, v in self.fields.items() if k not in ("stack", "native frames"))
        stack = html.escape(self.fields["stack"])
        hidden = int(self.fields["native frames"])
        toggle = f" <a href='native'>show its {hidden} C++ frames</a>" if hidden else \
            " <a href='native'>hide the C++ frames</a>" if self.native else ""
        self.setHtml(f"<table cellspacing=3>{rows}</table><p><b>stack</b>{toggle}</p>"
                     f"<pre style='font-size:8pt'>{stack}</pre>")

    def _toggle_native(self, _url=None) -> None:
        self.native = not self.native
        if self._shown is not None and self.run_id is not None:
            self.show_allocation(self._shown, self._rows[self.run_id])
