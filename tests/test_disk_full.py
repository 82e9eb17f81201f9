"""Every writer on a disk that fills: one line, a non-zero exit, nothing half-written
under the final name, and an earlier file of that name untouched.

The disk is a real tmpfs of a few MiB, mounted for these tests (they skip where this
machine cannot mount one), filled but for the room each case leaves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from memviz.snapshot import open_run

from .conftest import WORKER_DEADLINE_S

MEMVIZ = [sys.executable, "-m", "memviz"]
TINY = ["--model", "gpt2-tiny", "--batch-size", "1", "--seq-len", "32"]


@pytest.fixture(scope="module")
def disk():
    folder = Path(tempfile.mkdtemp(prefix="memviz-full-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"no tmpfs can be mounted here: {done.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)
    shutil.rmtree(folder, ignore_errors=True)


def _fill(disk: Path, room_kib: int) -> None:
    """Empty the disk, then fill it but for ``room_kib`` KiB."""
    for entry in disk.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize - room_kib * 1024
    with open(disk / "filler", "wb") as filler:
        filler.write(b"\0" * max(0, free))


def _left(disk: Path) -> list[str]:
    return sorted(p.name for p in disk.iterdir() if p.name != "filler")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("good") / "good.memviz"
    done = subprocess.run([*MEMVIZ, "run", *TINY, "--steps", "2", "-o", str(path)],
                          capture_output=True, text=True, timeout=WORKER_DEADLINE_S)
    assert done.returncode == 0, done.stderr
    return path


def _one_line_failure(done: subprocess.CompletedProcess, says: str) -> None:
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in done.stderr, lines


@pytest.mark.parametrize("kind", ["torch-pickle", "torch-json", "chrome-trace", "csv",
                                  "html", "folded"])
def test_an_export_that_does_not_fit_leaves_nothing_and_keeps_the_old_file(
        disk, recorded, kind):
    _fill(disk, 0)
    target = disk / f"out.{kind}"
    done = subprocess.run([*MEMVIZ, "export", str(recorded), "--to", kind, "-o", str(target)],
                          capture_output=True, text=True, timeout=120)
    _one_line_failure(done, "No space left on device")
    assert _left(disk) == []  # no 0-byte file, no folder, no partial
    # with --force over an earlier file: the earlier one stays whole
    _fill(disk, 64)
    earlier = b"an earlier export\n"
    if kind == "csv":
        target.mkdir()
        (target / "samples.csv").write_bytes(earlier)
    else:
        target.write_bytes(earlier)
    _fill_the_rest(disk)
    done = subprocess.run([*MEMVIZ, "export", str(recorded), "--to", kind, "-o", str(target),
                           "--force"], capture_output=True, text=True, timeout=120)
    _one_line_failure(done, "No space left on device")
    kept = target / "samples.csv" if kind == "csv" else target
    assert kept.read_bytes() == earlier and _left(disk) == [target.name]


def _fill_the_rest(disk: Path) -> None:
    """Fill what room is left, keeping every file there."""
    stat = os.statvfs(disk)
    with open(disk / "filler", "ab") as filler:
        filler.write(b"\0" * (stat.f_bavail * stat.f_frsize))


def test_a_run_whose_file_fills_says_so_once_and_keeps_what_it_committed(disk):
    _fill(disk, 0)
    done = subprocess.run([*MEMVIZ, "run", *TINY, "--steps", "2", "-o",
                           str(disk / "r.memviz")], capture_output=True, text=True,
                          timeout=WORKER_DEADLINE_S)
    _one_line_failure(done, "could not write")
    assert _left(disk) == []  # not even the header fitted: no empty file is left
    _fill(disk, 200)
    done = subprocess.run([*MEMVIZ, "run", *TINY, "--steps", "30", "-o",
                           str(disk / "r.memviz")], capture_output=True, text=True,
                          timeout=WORKER_DEADLINE_S)
    assert done.returncode == 1, done.stderr
    assert "recorded to" not in done.stderr and "No space left" in done.stderr
    assert "Traceback" not in done.stderr


def test_record_whose_file_fills_exits_1_in_one_line_though_its_program_succeeded(disk,
                                                                                 tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(textwrap.dedent("""
        import torch
        model = torch.nn.Linear(256, 256)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(60):
            model(torch.randn(64, 256)).sum().backward()
            opt.step()
            opt.zero_grad()
        print("done")
    """))
    _fill(disk, 260)
    out = disk / "p.memviz"
    done = subprocess.run([*MEMVIZ, "record", "-o", str(out), "--", "python", str(script)],
                          capture_output=True, text=True, timeout=WORKER_DEADLINE_S)
    assert done.stdout.strip() == "done"  # the program itself ran to its end
    _one_line_failure(done, "No space left on device")
    said = int(done.stderr.split("(")[-1].split(" steps")[0])
    if said:  # the steps it says the file holds are the steps the file holds
        assert len(open_run(out).steps) == said


def test_compare_outputs_that_do_not_fit_are_one_line(disk):
    _fill(disk, 0)
    done = subprocess.run([*MEMVIZ, "compare", *TINY, "--steps", "1", "--set", "baseline",
                           "--summary", str(disk / "c.json"), "-o",
                           str(disk / "c.html"), "--save", str(disk / "c.memviz")],
                          capture_output=True, text=True, timeout=WORKER_DEADLINE_S)
    assert done.returncode == 1, done.stderr
    assert "memviz compare: could not write its outputs: No space left on device" \
        in done.stderr and "Traceback" not in done.stderr
    assert _left(disk) == []
