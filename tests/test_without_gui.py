"""memviz on a GPU server without the window's libraries: record, run, export and
``memviz.track()`` work; ``memviz gui`` says how to add the window.

PySide6 and pyqtgraph are made unimportable for the processes here (and their
children) by packages of those names, first on PYTHONPATH, that refuse to load.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import WORKER_DEADLINE_S

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def no_gui_env(tmp_path_factory) -> dict[str, str]:
    blockers = tmp_path_factory.mktemp("no-gui")
    for name in ("PySide6", "pyqtgraph"):
        (blockers / name).mkdir()
        (blockers / name / "__init__.py").write_text(
            f"raise ImportError('{name} is not installed here')\n")
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    env["PYTHONPATH"] = os.pathsep.join([str(blockers), str(ROOT)])
    return env


def _memviz(env, *args, **kwargs):
    return subprocess.run([sys.executable, "-m", "memviz", *args], capture_output=True,
                          text=True, timeout=WORKER_DEADLINE_S, env=env, cwd=ROOT, **kwargs)


def test_the_blockers_block(no_gui_env):
    done = subprocess.run([sys.executable, "-c", "import PySide6"], env=no_gui_env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "is not installed here" in done.stderr


def test_run_record_export_and_track_need_no_window(no_gui_env, tmp_path):
    run_file = tmp_path / "run.memviz"
    ran = _memviz(no_gui_env, "run", "--model", "conv-lm", "--steps", "1", "--batch-size",
                  "1", "--seq-len", "32", "-o", str(run_file))
    assert ran.returncode == 0, ran.stderr
    recorded = _memviz(no_gui_env, "record", "-o", str(tmp_path / "rec.memviz"), "--",
                       "python", "examples/train_loop.py", "--steps", "1")
    assert recorded.returncode == 0, recorded.stderr
    exported = _memviz(no_gui_env, "export", str(run_file), "--to", "torch-json", "-o",
                       str(tmp_path / "run.json"))
    assert exported.returncode == 0, exported.stderr
    tracked = subprocess.run([sys.executable, "examples/track_in_script.py",
                              str(tmp_path / "track.memviz")], capture_output=True, text=True,
                             timeout=WORKER_DEADLINE_S, env=no_gui_env, cwd=ROOT)
    assert tracked.returncode == 0, tracked.stderr
    assert (tmp_path / "track.memviz").stat().st_size > 0


def test_the_window_says_how_to_add_itself(no_gui_env):
    done = _memviz(no_gui_env, "gui")
    assert done.returncode == 2
    assert "pip install 'memviz-profiler[gui]'" in done.stderr and "Traceback" not in done.stderr
