"""Start the Qt application and the main window."""

from __future__ import annotations

import sys
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QCoreApplication, QEvent, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from ..version import __version__

SMOKE_TEST_TIMEOUT_S = 180


def make_app() -> QApplication:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("memviz")
    app.setOrganizationName("memviz")
    app.setApplicationVersion(__version__)
    icon = Path(__file__).with_name("resources") / "memviz.svg"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    pg.setConfigOptions(antialias=False, foreground="k")
    return app


def launch(model: str | None = None, smoke_test: str | None = None,
           files: list[str] | None = None) -> int:
    from .main_window import MainWindow

    app = make_app()
    window = MainWindow(model=model)
    window.show()
    for path in files or []:
        window.open_snapshot(path)
    try:
        if smoke_test:
            return run_smoke_test(app, window, smoke_test)
        return app.exec()
    finally:
        dispose(window)


def dispose(widget) -> None:
    """Delete a top-level widget while Qt still runs. Left to interpreter exit, its
    pyqtgraph items are destroyed after the QApplication and the process crashes."""
    widget.close()
    widget.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QCoreApplication.processEvents()


def _report_shown() -> None:
    """How long from the process's start (bootloader included) to the shown window."""
    import time

    import psutil

    since = time.time() - psutil.Process().create_time()
    print(f"smoke test: window shown {since:.2f} s after the process started "
          f"(Qt platform {QApplication.platformName()})", flush=True)


def run_smoke_test(app: QApplication, window, out_png: str, steps: int = 2) -> int:
    """Run ``steps`` steps of the default model, save a screenshot, exit 0 if all ran."""
    QTimer.singleShot(0, _report_shown)  # the first event-loop turn after show()
    window.run_panel.steps.setValue(steps)
    spec = window.run_panel.spec()
    run = window.start_run(spec)
    result = {"code": 1}

    def check() -> None:
        if run is None or not run.finished:
            return
        window.refresh()
        window.grab().save(out_png)
        ok = run.state == "finished" and len(run.steps) == steps
        print(f"smoke test: run {run.state}, {len(run.steps)} steps, screenshot {out_png}")
        if run.error:
            print(f"smoke test: {run.error['message']}", file=sys.stderr)
        result["code"] = 0 if ok else 1
        app.quit()

    poll = QTimer()
    poll.timeout.connect(check)
    poll.start(100)
    QTimer.singleShot(SMOKE_TEST_TIMEOUT_S * 1000, app.quit)
    app.exec()
    window.close()
    return result["code"]
