"""Render resources/memviz.svg to the icon sizes installers need (PNG, and ICO for Windows).

Run once after changing the SVG: ``python packaging/make_icons.py``; the results
are committed in resources/icons/.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication(sys.argv)  # noqa: F841 (painting needs an application)
    renderer = QSvgRenderer(str(ROOT / "resources" / "memviz.svg"))
    out = ROOT / "resources" / "icons"
    out.mkdir(exist_ok=True)
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        renderer.render(painter)
        painter.end()
        image.save(str(out / f"memviz-{size}.png"))
        if size == 256:
            image.save(str(out / "memviz.ico"))
    print(f"icons written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
