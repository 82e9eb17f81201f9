"""Help → About: the versions a bug report needs, without importing torch into the window.

torch and transformers are read from their installed metadata; the device from
NVML (nvidia-ml-py) when a driver answers, else the CPU's model name.
"""

from __future__ import annotations

import platform
from importlib import metadata

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import qVersion
from PySide6.QtWidgets import QMessageBox, QWidget

from ..version import __version__


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return [str(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
                    for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library: a state, not an error
        return []


def versions() -> dict[str, str]:
    gpus = gpu_names()
    return {
        "memviz": __version__,
        "Qt": qVersion(),
        "PySide6": pyside_version,
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "Python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "device": ", ".join(gpus) if gpus else f"CPU: {cpu_name()} (no NVIDIA GPU)",
    }


def show_about(parent: QWidget) -> QMessageBox:
    rows = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in versions().items())
    box = QMessageBox(parent)
    box.setWindowTitle("About memviz")
    box.setText("<h3>memviz</h3><p>Where the memory of a language model goes, measured "
                f"live.</p><table>{rows}</table>")
    box.setIconPixmap(parent.windowIcon().pixmap(64, 64))
    box.open()
    return box
