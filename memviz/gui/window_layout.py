"""Where the window's parts sit: the run panel over the run list on the left; the
error banner, the timeline and the tabs of views on the right; the status bar."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGroupBox, QSplitter, QTabWidget, QVBoxLayout, QWidget


def arrange(window) -> tuple[QSplitter, QSplitter, QTabWidget]:
    """Lay out ``window``'s widgets (made by the window); the left and right splitters
    and the tabs, which the window resizes and follows."""
    runs_box = QGroupBox("Runs")
    QVBoxLayout(runs_box).addWidget(window.run_list)
    left = QSplitter(Qt.Orientation.Vertical)  # the user sizes the form and the runs
    left.addWidget(window.run_panel)
    left.addWidget(runs_box)
    left.setChildrenCollapsible(False)
    left.setStretchFactor(0, 3)
    left.setStretchFactor(1, 1)
    left.setMinimumWidth(330)  # the form's fields whole, even at 1024 px

    alloc_split = QSplitter(Qt.Orientation.Horizontal)
    alloc_split.addWidget(window.alloc_view)
    alloc_split.addWidget(window.inspector)
    alloc_split.setSizes([700, 280])
    alloc_tab = QWidget()
    alloc_layout = QVBoxLayout(alloc_tab)
    alloc_layout.setContentsMargins(2, 2, 2, 2)
    alloc_layout.addWidget(window.filter_bar)
    alloc_layout.addWidget(alloc_split, 1)
    tabs = QTabWidget()
    for widget, title in ((window.step_table, "Steps"), (alloc_tab, "Allocations"),
                          (window.moment_view, "At a moment"), (window.modules_view, "Modules"),
                          (window.story_view, "Memory story"),
                          (window.call_sites_view, "Call sites"),
                          (window.segments_view, "Segments"),
                          (window.comparison_view, "Technique comparison"),
                          (window.diff_view, "Diff two runs"), (window.ranks_view, "Ranks"),
                          (window.log_pane, "Log")):
        tabs.addTab(widget, title)

    right_split = QSplitter(Qt.Orientation.Vertical)
    right_split.addWidget(window.timeline)
    right_split.addWidget(tabs)
    right_split.setSizes([520, 240])
    right = QWidget()
    right_layout = QVBoxLayout(right)
    right_layout.setContentsMargins(0, 0, 0, 0)
    right_layout.addWidget(window.error_banner)
    right_layout.addWidget(right_split, 1)

    split = QSplitter(Qt.Orientation.Horizontal)
    split.addWidget(left)
    split.addWidget(right)
    split.setSizes([330, 950])
    window.setCentralWidget(split)

    bar = window.statusBar()
    bar.addWidget(window.state_label, 1)
    bar.addPermanentWidget(window.memory_label)
    bar.addPermanentWidget(window.gpu_label)
    return left, right_split, tabs
