"""What File → Open does: a .memviz file, a PyTorch snapshot (a large one read in the
background, with its progress), or a saved comparison, each joining the run list;
a file that cannot be opened says why in the banner and changes nothing else."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from ..core.run import Run
from ..core.text import printable
from .background_open import BackgroundOpens, opens_in_background
from .file_actions import runs_dir
from .working_set import first_window


class FileOpener:
    def __init__(self, window) -> None:
        self.window = window
        self.background_opens = BackgroundOpens()  # large PyTorch snapshots being read

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.window, "Open a snapshot", str(runs_dir()),
            "memviz and PyTorch snapshots (*.memviz *.pickle *.pkl *.json);;All files (*)")
        if path:
            self.open(path)

    def open(self, path: str) -> Run | None:
        """Open a .memviz file as a run in the list; a bad file says why, nothing else."""
        from ..snapshot import SnapshotError, open_run
        from ..snapshot.comparison_file import is_comparison

        window = self.window
        window.error_banner.user_acted()
        if not Path(path).is_file():  # a pipe would block the window on its first read
            window.error_banner.action_error(
                f"Cannot open {printable(str(path), one_line=True)}: " +
                ("not a regular file" if Path(path).exists() else "no such file"))
            return None
        if is_comparison(path):
            return self._open_comparison(path)
        if opens_in_background(path):  # a large PyTorch snapshot: None now, the run later
            self.background_opens.start(path, window.new_run_id())
            self.show_opening()
            return None
        try:
            # a long run: the whole timeline, and the allocations around its peak
            run = open_run(path, run_id=window.new_run_id(),
                           tensors_window=first_window(path, window.working_sets.max_events))
        except SnapshotError as exc:
            window.error_banner.action_error(f"Cannot open {exc}")
            return None
        return self._add(run, path)

    def _add(self, run: Run, path: str) -> Run:
        window = self.window
        for device_run in run.device_runs:  # a snapshot's other GPUs: a run each
            device_run.run_id = window.new_run_id()
            window.runs[device_run.run_id] = device_run
            window.run_list.add_run(device_run, select=False)
        window.runs[run.run_id] = run
        window.run_list.add_run(run)
        window.files.remember(str(Path(path).resolve()))
        window._shown_changed()
        window.state_label.setText(f"Opened {path}" + window_note(run))
        return run

    def _open_comparison(self, path: str) -> Run | None:
        """A saved comparison: its runs join the list, its table and charts come back."""
        from ..compare import load_comparison
        from ..snapshot import SnapshotError

        window = self.window
        try:
            comparison = load_comparison(path, window.new_run_id)
        except SnapshotError as exc:
            window.error_banner.action_error(f"Cannot open {exc}")
            return None
        for result in comparison.results:
            window.runs[result.run.run_id] = result.run
            window.run_list.add_run(result.run, select=False)
        window.comparison = comparison
        window.tabs.setCurrentWidget(window.comparison_view)
        window.files.remember(str(Path(path).resolve()))
        window.state_label.setText(f"Opened the comparison {path}")
        window.refresh()
        return comparison.results[0].run if comparison.results else None

    def show_opening(self) -> None:
        pending = self.background_opens.pending()
        if pending:
            self.window.state_label.setText("Opening " + ", ".join(
                f"{Path(o.path).name} ({o.fraction:.0%})" for o in pending) + "…")

    def take_background_opens(self) -> None:
        """Snapshots read in the background: each joins the list, or says why not."""
        for opening in self.background_opens.poll():
            if opening.run is not None:
                self._add(opening.run, opening.path)
            else:
                self.window.error_banner.action_error(f"Cannot open {opening.error}")
        self.show_opening()


def window_note(run: Run) -> str:
    """What a windowed run shows of its allocations (nothing for a whole one)."""
    if run.tensors_window is None:
        return ""
    a, b = run.tensors_window
    return (f": a long run; the allocations of {a:.1f}–{b:.1f} s are loaded (the shaded "
            "span); click elsewhere on the timeline to load that part")
