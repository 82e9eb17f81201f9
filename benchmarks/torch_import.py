"""Opening PyTorch memory snapshots of any size: ``python -m benchmarks.torch_import
[ENTRIES ...]``.

Writes a snapshot of each size shaped as ``torch.cuda.memory._dump_snapshot`` writes
one (benchmarks/torch_snapshot_file.py: 24 frames an entry, shared frames), opens it
with ``open_run`` in a fresh process, and prints the time and the process's peak RSS
against the file's size; beside it, what Python's C unpickler alone costs on the
smallest file (what memviz did before, and what PyTorch's own tools do).
Default sizes: 1M, 4M and 14M entries (about 150 MB, 0.6 GB and 2.1 GB).
"""

from __future__ import annotations

import os
import sys
import tempfile

from memviz.cli.formatting import table

from . import common
from .torch_snapshot_file import write_snapshot

CHILD = """
import resource, sys, time
path, how = sys.argv[1], sys.argv[2]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
if how == "memviz":
    from memviz.snapshot import open_run
    n = len(open_run(path).tensors)
else:
    import pickle
    with open(path, "rb") as f:
        n = sum(1 for e in pickle.load(f)["device_traces"][0] if e["action"] == "alloc")
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, n)
"""


def open_in_child(path: str, how: str) -> tuple[float, float, int]:
    return common.open_in_child(CHILD, path, how, timeout=1800)


def main(argv: list[str]) -> int:
    sizes = [int(float(a)) for a in argv] or [1_000_000, 4_000_000, 14_000_000]
    folder = tempfile.mkdtemp(prefix="memviz-torch-import-")
    rows = []
    for i, entries in enumerate(sizes):
        path = os.path.join(folder, f"snapshot-{entries}.pickle")
        held = write_snapshot(path, entries)
        size = os.path.getsize(path)
        took, peak, n = open_in_child(path, "memviz")
        assert n == held["allocations"], (n, held)
        rows.append([f"{entries:,}", f"{size / 2**30:.2f} GiB", "memviz (opcode walk)",
                     f"{took:.1f} s", f"{peak:,.0f} MiB", f"{peak * 2**20 / entries:.0f} B"])
        if i == 0:
            took, peak, n = open_in_child(path, "pickle")
            rows.append([f"{entries:,}", f"{size / 2**30:.2f} GiB", "C unpickler alone",
                         f"{took:.1f} s", f"{peak:,.0f} MiB",
                         f"{peak * 2**20 / entries:.0f} B"])
        os.unlink(path)
    print(table(["entries", "file", "reader", "open", "peak RSS", "RSS / entry"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
