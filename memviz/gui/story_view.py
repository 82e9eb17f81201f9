"""Memory story: at the cursor (the tracked peak until one is placed), how RSS and the
GPU figures add up, each gap named and sized (``core.story``)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from ..core.run import Run
from ..core.story import Part, story_at
from .axes import format_bytes

HEADERS = ["what", "bytes", "how it is known"]


class StoryView(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.title = QLabel("Select a run: why RSS, PyTorch and nvidia-smi disagree, "
                            "at the cursor")
        self.title.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(HEADERS)
        self.tree.setColumnWidth(0, 400)
        self.tree.setColumnWidth(1, 110)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.title)
        layout.addWidget(self.tree, 1)
        self._key = None

    def show_moment(self, run: Run | None, t: float | None) -> None:
        key = None if run is None else (run.run_id, run.revision, t)
        if key == self._key:
            return
        self._key = key
        self.tree.clear()
        if run is None:
            self.title.setText("Select a run to see how its memory adds up")
            return
        story = story_at(run, t)
        where = "the tracked peak" if t is None else "the cursor"
        self.title.setText(f"Run #{run.run_id} at t = {story.t:.3f} s ({where}): how the "
                           "figures add up. A derived line is the difference of the others")
        for part in (story.cpu, story.gpu):
            if part is not None:
                self.tree.addTopLevelItem(self._item(part))
        self.tree.expandAll()

    def _item(self, part: Part) -> QTreeWidgetItem:
        item = QTreeWidgetItem([part.label + (" (the difference)" if part.derived else ""),
                                format_bytes(part.nbytes), part.explanation])
        item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        item.setToolTip(2, part.explanation)
        for child in part.parts:
            item.addChild(self._item(child))
        return item

    def rows(self) -> list[tuple[str, str]]:
        """Every line shown, as (what, bytes), depth first."""
        out = []
        stack = [self.tree.topLevelItem(i) for i in reversed(range(self.tree.topLevelItemCount()))]
        while stack:
            item = stack.pop()
            out.append((item.text(0), item.text(1)))
            stack.extend(item.child(i) for i in reversed(range(item.childCount())))
        return out
