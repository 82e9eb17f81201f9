"""The window's menus and keyboard shortcuts (shown in the menus and the tooltips):
File, Run, View and Help."""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence

from .file_actions import EXPORTS
from .help_menu import add_help_menu

RUN_KEYS = ("Ctrl+R", "F5")
STOP_KEY = "Esc"


class WindowMenus:
    def __init__(self, window) -> None:
        self.window = window
        self.tab_actions: list[QAction] = []
        w = window
        files = w.files
        bar = w.menuBar()

        menu = bar.addMenu("&File")
        self._add(menu, "&Open snapshot…", w._open_dialog, QKeySequence.StandardKey.Open)
        self.recent_menu = menu.addMenu("Open &recent")
        self.fill_recent()
        self._add(menu, "&Save run as…", files.save_run_dialog, QKeySequence.StandardKey.SaveAs)
        self._add(menu, "Save the &comparison as…", files.save_comparison_dialog)
        export = menu.addMenu("&Export the run as")
        for label, kind, file_filter in EXPORTS:
            self._add(export, label,
                      lambda _=False, k=kind, f=file_filter: files.export_dialog(k, f))
        for label, view in (("timeline", lambda: w.timeline),
                            ("allocations view", lambda: w.alloc_view)):
            self._add(menu, f"Save the {label} as PNG or SVG…",
                      lambda _=False, v=view, n=label: files.save_view_dialog(v(), n))
        menu.addSeparator()
        self._add(menu, "&Wait for a program…", w.external.wait_for_programs,
                  tip="Profile your own script: memviz shows the command to run it with")
        self._add(menu, "Attach to a &process…", w.external.attach_process_dialog)
        self._add(menu, "&Attach to a worker…", w.external.attach_dialog,
                  tip="Run on a worker started elsewhere with memviz worker --listen")
        menu.addSeparator()
        self._add(menu, "Where are runs recorded?", w._say_runs_dir)
        self._add(menu, "&Quit", w.close, QKeySequence.StandardKey.Quit)

        run = bar.addMenu("&Run")
        self.run_action = self._add(run, "&Run", w.start_run, RUN_KEYS,
                                    tip="Run the workload chosen on the left")
        self.stop_action = self._add(run, "&Stop", w.stop_run, STOP_KEY,
                                     tip="Stop the run at its next phase (twice: at once)")
        self._add(run, "Record the next step in &full", w.record_next_step_in_full, "Ctrl+D",
                  tip="Track every op of the next step (temporaries included), whatever "
                      "the run's detail policy")
        self._add(run, "&Compare the sets in the comparison tab", lambda: (
            w.tabs.setCurrentWidget(w.comparison_view),
            w.start_comparison(w.comparison_view.sets_edit.toPlainText())))

        view = bar.addMenu("&View")
        for i in range(w.tabs.count()):
            key = f"Ctrl+{i + 1}" if i < 9 else None
            action = self._add(view, w.tabs.tabText(i),
                               lambda _=False, n=i: w.tabs.setCurrentIndex(n), key)
            self.tab_actions.append(action)
        view.addSeparator()
        self._add(view, "Next tab", lambda: w.tabs.setCurrentIndex(
            (w.tabs.currentIndex() + 1) % w.tabs.count()), "Ctrl+Tab")
        self._add(view, "Previous tab", lambda: w.tabs.setCurrentIndex(
            (w.tabs.currentIndex() - 1) % w.tabs.count()), "Ctrl+Shift+Tab")
        self._add(view, "Show the whole run", lambda: w.timeline.plot_item.getViewBox()
                  .enableAutoRange(x=True, y=True), "Ctrl+0")
        self._add(view, "Show or hide the legend", w.timeline.legend.toggle_folded, "Ctrl+L")
        self.align_action = self._add(view, "Align overlaid runs by their first step",
                                      lambda: w.timeline.set_align_by_step(
                                          self.align_action.isChecked()),
                                      tip="Line every overlaid run's first step up with the "
                                          "selected run's, instead of their starts")
        self.align_action.setCheckable(True)

        add_help_menu(self, bar)
        w.run_panel.run_button.setToolTip(f"Run ({' or '.join(RUN_KEYS)})")
        w.run_panel.stop_button.setToolTip(f"Stop ({STOP_KEY}; press it twice to stop at once)")

    def _add(self, menu, label: str, slot, keys=None, tip: str = "") -> QAction:
        action = QAction(label, self.window)
        if keys is not None:
            if isinstance(keys, tuple):
                action.setShortcuts([QKeySequence(k) for k in keys])
            else:
                action.setShortcut(QKeySequence(keys))
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(lambda _=False: slot())
        menu.addAction(action)
        return action

    def fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.window.files.recent_files():
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.window.open_snapshot(p))
