"""Make docs/screenshot.png: the real window after a short real run of the default model.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/make_screenshot.py [OUT.png] [STEPS]
"""

from __future__ import annotations

import sys
from pathlib import Path

from memviz.gui.app import dispose, make_app, run_smoke_test
from memviz.gui.main_window import MainWindow

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).with_name("screenshot.png"))
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    app = make_app()
    window = MainWindow()
    window.show()
    code = run_smoke_test(app, window, out, steps=steps)
    dispose(window)
    sys.exit(code)
