"""The layers of docs/architecture.md are contracts a tool checks (`make lint` runs
lint-imports): they hold on the tree, and a deliberate violation breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter not installed")


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config",
                           str(ROOT / "pyproject.toml")], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def tree(tmp_path) -> Path:
    """A copy of the package to break."""
    shutil.copytree(ROOT / "memviz", tmp_path / "memviz",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_tree_keeps_every_contract(tree):
    done = _lint(tree)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Contracts: 4 kept, 0 broken." in done.stdout


@pytest.mark.parametrize("module,line,broken", [
    ("core/sizes.py", "from ..session import WorkerSession",
     "Each layer imports only the layers below it"),
    ("core/sizes.py", "import torch", "core, protocol and snapshot import neither torch nor Qt"),
    ("gui/about.py", "import transformers",
     "The GUI side never imports torch or the libraries built on it"),
    ("tracking/tracker.py", "import pyqtgraph", "The worker side never imports Qt"),
])
def test_a_violation_breaks_its_contract(tree, module, line, broken):
    path = tree / "memviz" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    done = _lint(tree)
    assert done.returncode != 0
    assert f"{broken} BROKEN" in done.stdout
