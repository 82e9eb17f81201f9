"""The screenshots in docs/: the real window on real runs of the default model.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshots.py

docs/screenshot.png is the window after a run; docs/views/*.png are each view.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PySide6.QtCore import Qt

from memviz.core.spec import RunSpec
from memviz.gui.app import make_app
from memviz.gui.main_window import MainWindow

HERE = Path(__file__).parent


def main() -> int:
    app = make_app()
    window = MainWindow()
    window.resize(1400, 900)
    window.show()

    def settle(seconds: float = 0.3) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            window.refresh()
            app.processEvents()
            time.sleep(0.02)

    def run(spec: RunSpec):
        started = window.start_run(spec)
        if started is None:
            raise SystemExit(window.error_banner.text())
        while not started.finished:
            settle(0.1)
        return started

    views = HERE / "views"
    views.mkdir(exist_ok=True)
    window.grab().save(str(views / "empty.png"))
    base = run(RunSpec(model="gpt2-tiny", steps=6, batch_size=2, seq_len=128))
    checkpointed = run(RunSpec(model="gpt2-tiny", steps=6, batch_size=2, seq_len=128,
                               techniques=[{"name": "checkpointing", "params": {}}]))
    window.select_run(base.run_id)
    settle()
    window.grab().save(str(HERE / "screenshot.png"))
    for index in range(window.tabs.count()):
        name = window.tabs.tabText(index)
        window.tabs.setCurrentIndex(index)
        if name == "Diff two runs":
            window.select_run(checkpointed.run_id)
            window.run_list.item(0).setCheckState(Qt.CheckState.Checked)
        settle()
        slug = name.lower().replace(" ", "-")
        window.grab().save(str(views / f"{slug}.png"))
        if name == "Diff two runs":
            window.run_list.item(0).setCheckState(Qt.CheckState.Unchecked)
            window.select_run(base.run_id)
    window.run_list.item(0).setCheckState(Qt.CheckState.Checked)
    window.select_run(checkpointed.run_id)
    window.tabs.setCurrentIndex(0)
    settle()
    window.grab().save(str(views / "overlay.png"))
    window.external.wait_for_programs()
    settle()
    window.external.dialog.grab().save(str(views / "wait-for-a-program.png"))
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
