"""What the File menu does with runs: save, export, remember recent files.

Every success says where the file went in the status bar; every failure is a
banner line that stays until the user acts.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths
from PySide6.QtWidgets import QFileDialog

from ..core.run import Run

MAX_RECENT = 8
# (menu label, the format's name, file filter; a folder for CSV)
EXPORTS = (
    ("PyTorch memory snapshot (pickle)…", "torch-pickle", "PyTorch snapshot (*.pickle)"),
    ("PyTorch memory snapshot (JSON)…", "torch-json", "JSON (*.json)"),
    ("Chrome trace (Perfetto)…", "chrome-trace", "Chrome trace (*.json)"),
    ("CSV tables (a folder)…", "csv", ""),
    ("HTML report…", "html", "HTML (*.html)"),
)
SUFFIX = {"torch-pickle": ".pickle", "torch-json": ".json", "chrome-trace": ".trace.json",
          "html": ".html"}


def export_run(run: Run, kind: str, out: Path) -> None:
    """Write ``run`` as ``kind`` (the names of ``memviz export --to``)."""
    from ..snapshot import exports, html_report
    from ..snapshot.torch_export import write

    if kind == "chrome-trace":
        exports.write_chrome_trace(run, out)
    elif kind == "csv":
        exports.write_csv(run, out)
    elif kind == "html":
        html_report.write(run, out)
    else:
        write(run, out, kind)


def runs_dir() -> Path:
    """Where every run is recorded: MEMVIZ_RUNS_DIR, the setting, or the app data folder."""
    configured = os.environ.get("MEMVIZ_RUNS_DIR") or QSettings().value("runs_dir", "")
    if configured:
        return Path(str(configured))
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".memviz") / "runs"


class FileActions:
    def __init__(self, window) -> None:
        self.window = window

    def _done(self, text: str) -> None:
        self.window.statusBar().showMessage(text, 10_000)
        self.window.state_label.setText(text)

    # -- saving and exporting ---------------------------------------------------------
    def save_run_dialog(self) -> None:
        run = self.window.current_run()
        if run is None:
            self.window.error_banner.action_error("No run selected to save")
            return
        path, _ = QFileDialog.getSaveFileName(  # the dialog asks before replacing a file
            self.window, "Save the run", f"memviz-run-{run.run_id}.memviz",
            "memviz snapshots (*.memviz)")
        if path:
            self.save_run_as(run, path, overwrite=True)

    def save_run_as(self, run: Run, path: str, overwrite: bool = False) -> bool:
        """Copy the run's recording to ``path`` (never over a file unless told to)."""
        from ..snapshot.copy import copy_snapshot

        try:
            copy_snapshot(run.snapshot_path, path, overwrite=overwrite)
        except (OSError, ValueError) as exc:
            self.window.error_banner.action_error(f"Cannot save run #{run.run_id}: {exc}")
            return False
        self.remember(str(Path(path).resolve()))
        self._done(f"Saved run #{run.run_id} to {path}")
        return True

    def save_comparison_dialog(self) -> None:
        comparison = self.window.comparison
        if comparison is None or not comparison.finished:
            self.window.error_banner.action_error("No finished comparison to save")
            return
        path, _ = QFileDialog.getSaveFileName(
            self.window, "Save the comparison", "memviz-comparison.memviz",
            "memviz snapshots (*.memviz)")
        if path:
            self.save_comparison_as(path, overwrite=True)

    def save_comparison_as(self, path: str, overwrite: bool = False) -> bool:
        """The whole comparison (every set's recorded run) in one file."""
        from ..compare import save_comparison

        try:
            save_comparison(self.window.comparison, path, overwrite=overwrite)
        except (OSError, ValueError) as exc:
            self.window.error_banner.action_error(f"Cannot save the comparison: {exc}")
            return False
        self.remember(str(Path(path).resolve()))
        self._done(f"Saved the comparison to {path}")
        return True

    def export_dialog(self, kind: str, file_filter: str) -> None:
        run = self.window.current_run()
        if run is None:
            self.window.error_banner.action_error("No run selected to export")
            return
        if kind == "csv":
            path = QFileDialog.getExistingDirectory(self.window, "Export CSV tables into")
        else:
            path, _ = QFileDialog.getSaveFileName(
                self.window, "Export the run", f"memviz-run-{run.run_id}{SUFFIX[kind]}",
                file_filter)
        if path:
            self.export(run, kind, path)

    def export(self, run: Run, kind: str, path: str) -> bool:
        try:
            with run.lock:
                export_run(run, kind, Path(path))
        except (OSError, ValueError) as exc:
            self.window.error_banner.action_error(f"Cannot export run #{run.run_id}: {exc}")
            return False
        self._done(f"Exported run #{run.run_id} ({kind}) to {path}")
        return True

    def save_view_dialog(self, widget, name: str) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self.window, f"Save the {name}", f"memviz-{name.replace(' ', '-')}.png",
            "PNG image (*.png);;SVG drawing (*.svg)")
        if path:  # the dialog itself asks before replacing a file
            self.save_view(widget, name, path)

    def save_view(self, widget, name: str, path: str) -> bool:
        from .plot_export import save

        if hasattr(widget, "clear_readout"):  # the pointer's values are not the picture's
            widget.clear_readout()
        try:
            save(widget, path, f"memviz {name}")
        except OSError as exc:
            self.window.error_banner.action_error(str(exc))
            return False
        self._done(f"Saved the {name} to {path}")
        return True

    # -- recent files -------------------------------------------------------------------
    @staticmethod
    def recent_files() -> list[str]:
        value = QSettings().value("recent_files", [])
        return [str(v) for v in (value if isinstance(value, list) else [value]) if v]

    def remember(self, path: str) -> None:
        recent = [path] + [p for p in self.recent_files() if p != path]
        QSettings().setValue("recent_files", recent[:MAX_RECENT])
        self.window.menus.fill_recent()
