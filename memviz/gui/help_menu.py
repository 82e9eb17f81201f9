"""Help: the keyboard shortcuts (read off the menus themselves, so they never drift)
and the documentation's topics, opened from the checkout or installation they came with.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QAction, QDesktopServices
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout

# the topics, in the order a new user needs them
TOPICS = (("Getting started (README)", "README.md"),
          ("Tracking: what is counted, and how", "docs/tracking.md"),
          ("Techniques and what they cost", "docs/techniques.md"),
          ("Comparing and what fits", "docs/compare.md"),
          ("The .memviz file and SQL", "docs/snapshot.md"),
          ("Notebooks", "docs/notebook.md"),
          ("Architecture", "docs/architecture.md"))


def docs_root() -> Path:
    """Where README.md and docs/ sit next to the package (a checkout, or a bundle that
    ships them)."""
    return Path(__file__).resolve().parents[2]


def shortcuts(bar) -> list[tuple[str, str, str]]:
    """(menu, action, keys) for every menu action that has a shortcut."""
    found = []
    for menu_action in bar.actions():
        menu = menu_action.menu()
        if menu is None:
            continue
        for action in menu.actions():
            keys = ", ".join(k.toString() for k in action.shortcuts())
            if keys:
                found.append((menu_action.text().replace("&", ""),
                              action.text().replace("&", ""), keys))
    return found


class ShortcutsDialog(QDialog):
    def __init__(self, bar, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = "".join(f"<tr><td>{menu}</td><td>{action}</td><td><b>{keys}</b></td></tr>"
                       for menu, action, keys in shortcuts(bar))
        self.text = QLabel(f"<table cellspacing=4>{rows}</table>"
                           "<p>On the timeline: click to place the cursor, drag to zoom "
                           "in on a span, the wheel zooms time, a double click shows "
                           "everything.</p>")
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.hide)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addWidget(close)


def add_help_menu(menus, bar) -> None:
    """Help → the topics, the shortcuts, About."""
    window = menus.window
    help_menu = bar.addMenu("&Help")
    root = docs_root()
    for title, relative in TOPICS:
        path = root / relative
        action = QAction(title, window)
        action.setEnabled(path.is_file())
        action.setToolTip(str(path) if path.is_file() else
                          f"{relative} is not installed with this copy of memviz")
        action.triggered.connect(
            lambda _=False, p=path: QDesktopServices.openUrl(QUrl.fromLocalFile(str(p))))
        help_menu.addAction(action)
    help_menu.addSeparator()
    menus.shortcuts_dialog = None

    def show_shortcuts() -> None:
        if menus.shortcuts_dialog is None:
            menus.shortcuts_dialog = ShortcutsDialog(bar, window)
        menus.shortcuts_dialog.show()

    menus._add(help_menu, "&Keyboard shortcuts", show_shortcuts, "F1")
    menus._add(help_menu, "&About memviz", window.show_about)
