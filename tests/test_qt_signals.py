"""PySide6 6.12.0 on Python 3.11 leaks a reference to True per Signal.emit and
aborts after ~600 emits; a live plot emits on every setData. This must survive."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
from PySide6.QtCore import QCoreApplication, QObject, Signal

class Emitter(QObject):
    fired = Signal(object)

app = QCoreApplication([])
e = Emitter()
got = []
e.fired.connect(got.append)
before = sys.getrefcount(True)
for i in range(10_000):
    e.fired.emit(i)
print(len(got), sys.getrefcount(True) - before)
"""


def test_ten_thousand_signal_emits_do_not_crash_the_interpreter():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f"interpreter died ({out.returncode}): {out.stderr[-500:]}"
    received, refcount_drift = map(int, out.stdout.split())
    assert received == 10_000
    assert abs(refcount_drift) < 100
