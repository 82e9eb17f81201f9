"""The layer rules: the GUI never loads torch; the worker never loads Qt."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import importlib, pkgutil, sys
for root in {roots!r}:
    pkg = importlib.import_module(root)
    for m in pkgutil.walk_packages(getattr(pkg, "__path__", []), root + "."):
        importlib.import_module(m.name)
print(" ".join(sorted(n for n in {forbidden!r} if n in sys.modules)))
"""


def _loaded(roots: list[str], forbidden: list[str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(roots=roots, forbidden=forbidden)],
        capture_output=True, text=True, timeout=120,
        env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_gui_does_not_import_torch_or_transformers():
    assert _loaded(["memviz.gui", "memviz.session", "memviz.core", "memviz.protocol",
                    "memviz.snapshot", "memviz.compare", "memviz.estimate"],
                   ["torch", "transformers"]) == ""


@pytest.mark.parametrize("root", ["memviz.worker", "memviz.models"])
def test_worker_side_does_not_import_qt(root):
    assert _loaded([root], ["PySide6", "pyqtgraph", "PySide6.QtCore"]) == ""
