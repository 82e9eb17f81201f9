"""The built installers, as a user gets them: the .deb unpacked into a private root and
the tarball unpacked, each started offscreen and under Xvfb (xcb), and headless.

Run by ``make package-test`` after ``packaging/build.py``; skipped when nothing was built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"
SMOKE_TIMEOUT_S = 240


def built(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    if not found:
        pytest.skip(f"no {pattern} in dist/: run python packaging/build.py first")
    return found[-1]


@pytest.fixture(scope="module")
def deb_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("deb-root")
    subprocess.run(["dpkg-deb", "-x", str(built("memviz_*_amd64.deb")), str(root)], check=True)
    return root


def clean_env(**extra: str) -> dict[str, str]:
    """No virtual environment, no PYTHONPATH: only what the bundle carries."""
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
           "MEMVIZ_RUNS_DIR": "/tmp/memviz-package-test-runs", **extra}
    return env


def non_blank(png: Path) -> int:
    """How many distinct colours the screenshot has (a blank window has one or two)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication, QImage

    _app = QGuiApplication.instance() or QGuiApplication([])
    image = QImage(str(png))
    assert not image.isNull() and image.width() > 400 and image.height() > 300
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7)
               for y in range(0, image.height(), 7)}
    return len(colours)


def smoke(executable: Path, out: Path, *wrapper: str, **env: str) -> str:
    done = subprocess.run([*wrapper, str(executable), "--smoke-test", str(out)],
                          env=clean_env(**env), capture_output=True, text=True,
                          timeout=SMOKE_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "smoke test: run finished, 2 steps" in done.stdout
    assert non_blank(out) > 20
    return done.stdout + done.stderr


def test_deb_lays_out_the_app_the_path_entry_and_the_desktop_file(deb_root):
    assert (deb_root / "opt/memviz/memviz").is_file()
    assert os.readlink(deb_root / "usr/bin/memviz") == "/opt/memviz/memviz"
    desktop = (deb_root / "usr/share/applications/memviz.desktop").read_text()
    assert "Exec=memviz %F" in desktop and "Icon=memviz" in desktop
    assert (deb_root / "usr/share/icons/hicolor/256x256/apps/memviz.png").is_file()
    info = subprocess.run(["dpkg-deb", "-f", str(built("memviz_*_amd64.deb")), "Depends"],
                          capture_output=True, text=True, check=True).stdout
    assert "libxcb-cursor0" in info and "libxkbcommon-x11-0" in info


def test_deb_smoke_test_offscreen(deb_root, tmp_path):
    out = smoke(deb_root / "opt/memviz/memviz", tmp_path / "offscreen.png",
                QT_QPA_PLATFORM="offscreen")
    assert "(Qt platform offscreen)" in out


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run")
def test_deb_smoke_test_under_xvfb_with_xcb(deb_root, tmp_path):
    """Offscreen never loads the xcb plugin: only a real X server catches a missing
    X library."""
    out = smoke(deb_root / "opt/memviz/memviz", tmp_path / "xcb.png",
                "xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", QT_QPA_PLATFORM="xcb")
    assert "(Qt platform xcb)" in out  # the window really came up through xcb


def test_tarball_runs_headless_with_its_own_worker(tmp_path):
    subprocess.run(["tar", "--use-compress-program", "zstd -d", "-xf",
                    str(built("memviz-*-linux-x86_64.tar.zst")), "-C", str(tmp_path)],
                   check=True)
    app = tmp_path / "memviz" / "memviz"
    summary = tmp_path / "summary.json"
    started = time.monotonic()
    done = subprocess.run([str(app), "run", "--steps", "2", "--batch-size", "2", "--seq-len",
                           "64", "--technique", "lora:r=4", "--summary", str(summary)],
                          env=clean_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(summary.read_text())
    assert result["state"] == "finished" and len(result["steps"]) == 2
    assert result["techniques"][0]["name"] == "lora"  # peft inside the bundle
    # the size on disk under zstd: zstandard's C backend is in the bundle (the other
    # backend is pruned)
    assert 0 < result["model_on_disk"]["zstd_bytes"] < result["model_on_disk"]["bytes"]
    assert time.monotonic() - started < 300
