"""A job a launcher starts once a rank (``torchrun``), recorded rank by rank: every rank
tracked in its own process, each exact against torch.profiler in that rank, one run
with its ranks, and the highest rank named with why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memviz.core.rank_files import rank_path, ranks_beside
from memviz.core.ranks import all_ranks, rank_table
from memviz.core.summary import build_summary
from memviz.protocol.token import TOKEN_ENV
from memviz.snapshot import open_run

from .conftest import WORKER_DEADLINE_S

ROOT = Path(__file__).resolve().parent.parent
MEMVIZ = [sys.executable, "-m", "memviz"]
SCRIPT = ROOT / "tests" / "programs" / "ddp_profiled.py"
PARAMETER_BYTES = 4 * (256 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 256 + 256)
DOCS_VIEWS = ROOT / "docs" / "views"
WAIT_MS = 180_000
PROFILER_SCALARS = 20  # bytes the profiler sees in a step that no storage of the step holds


def _above_start(run, step: int) -> int:
    """The step's tracked peak above what was live when it began (as the profiler,
    started just before it, counts)."""
    rows = run.tensors.rows
    t_alloc, t_free = rows.column("t_alloc"), rows.column("t_free")
    began = min(p.begin for p in run.phases if p.step == step)
    live = rows.column("nbytes")[(t_alloc < began) & ~(t_free <= began)].astype(np.int64)
    return run.steps[step].tracked_peak_bytes - int(live.sum())


@pytest.fixture(scope="module")
def recorded_job(tmp_path_factory):
    folder = tmp_path_factory.mktemp("job")
    out = folder / "job.memviz"
    done = subprocess.run(
        [*MEMVIZ, "record", "--detail", "all", "-o", str(out), "--summary",
         str(folder / "job.json"), "--", "python", "-m", "torch.distributed.run",
         "--nproc_per_node", "2", "--standalone", str(SCRIPT), str(folder / "profiler")],
        capture_output=True, text=True, timeout=WORKER_DEADLINE_S, cwd=folder)
    return done, folder


def test_every_rank_of_a_torchrun_job_is_recorded_exactly(recorded_job):
    done, folder = recorded_job
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished, 3 steps recorded" in done.stderr
    assert ranks_beside(folder / "job.memviz", 2) == {1: folder / "job.rank1.memviz"}
    run = open_run(folder / "job.memviz")
    assert run.rank == 0 and sorted(run.ranks) == [1] and run.ranks[1].rank == 1
    for rank, rank_run in ((0, run), (1, run.ranks[1])):
        assert len(rank_run.steps) == 3 and rank_run.state == "finished"
        profiled = json.loads((folder / f"profiler.{rank}.json").read_text())
        expected = profiled["step_peak_above_start"]
        tracked = _above_start(rank_run, 2)
        # within 0.1 % of torch.profiler in that rank; in fact to its scalars
        assert abs(tracked - expected) <= 0.001 * expected, (rank, tracked, expected)
        assert expected - tracked == PROFILER_SCALARS, (rank, tracked, expected)


def test_the_highest_rank_is_named_with_why(recorded_job):
    done, folder = recorded_job
    summary = json.loads((folder / "job.json").read_text())
    ranks = summary["distributed"]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    peaks = [r["tracking"]["tracked_bytes"] for r in ranks]
    assert summary["distributed"]["sum"]["tracked_bytes"] == sum(peaks)
    highest = summary["distributed"]["highest"]
    # rank 1's batch is 64 rows × 256 float32 larger: at the peak (in the optimizer
    # step) that input, and only it; its activations, 64 rows × 1024 float32 more in
    # each layer after the first, are gone by then, and the modules say so
    extra_rows = 64 * 1024 * 4
    assert highest == {"rank": 1, "over_rank": 0, "bytes": 64 * 256 * 4,
                       "categories": {"input": 64 * 256 * 4},
                       "modules": [["module.1", extra_rows], ["module.2", extra_rows],
                                   ["module.3", extra_rows]]}
    assert "rank 1 peaks highest, +64.0 KiB over rank 0: inputs +64.0 KiB" in done.stderr
    assert build_summary(open_run(folder / "job.memviz"))["distributed"]["highest"] == highest


def test_ddp_buckets_are_gradients_at_the_peak(recorded_job):
    _, folder = recorded_job
    for rank in (0, 1):
        run = open_run(rank_path(folder / "job.memviz", rank))
        at_peak = build_summary(run)["peak_by_category"]
        # the gradients and DDP's buckets that hold a copy of them; nothing left as other
        assert at_peak["gradient"] == 2 * PARAMETER_BYTES
        assert at_peak["parameter"] == PARAMETER_BYTES and at_peak["other"] == 0


def test_diff_compares_one_rank_of_two_jobs(recorded_job):
    _, folder = recorded_job
    done = subprocess.run([*MEMVIZ, "diff", "--rank", "1", str(folder / "job.memviz"),
                           str(folder / "job.memviz"), "--summary", "-"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    rank1 = json.loads((folder / "job.json").read_text())["distributed"]["ranks"][1]
    assert result["a"]["tracked_peak_bytes"] == rank1["tracking"]["tracked_bytes"]
    missing = subprocess.run([*MEMVIZ, "diff", "--rank", "5", str(folder / "job.memviz"),
                              str(folder / "job.memviz")], capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 2
    assert "holds no rank 5 (ranks held: 0, 1)" in missing.stderr


def test_each_rank_running_memviz_record_writes_its_own_file(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--standalone", "-m", "memviz", "record", "-o", "same.memviz", "--",
         "python", str(SCRIPT), str(tmp_path / "profiler")],
        capture_output=True, text=True, timeout=WORKER_DEADLINE_S, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "FileExistsError" not in done.stderr
    run = open_run(tmp_path / "same.memviz")
    assert sorted(run.ranks) == [1] and len(run.ranks[1].steps) == 3


@pytest.mark.parametrize("argv,says", [
    (["torchrun", "--no-python", "--nproc_per_node", "2", "train.sh"],
     "cannot follow torchrun --no-python (its ranks are not Python)"),
    (["accelerate", "launch", "train.py"], "cannot follow accelerate launch's ranks"),
    (["python", "-m", "torch.distributed.run", "--nproc_per_node", "2", "missing.py"],
     "no such script: missing.py"),
])
def test_a_launcher_memviz_cannot_follow_is_named_in_one_line(argv, says, tmp_path):
    done = subprocess.run([*MEMVIZ, "record", "-o", str(tmp_path / "x.memviz"), "--", *argv],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"memviz record: {says}"
                                                + done.stderr.split(says, 1)[1].rstrip()]


def test_the_window_follows_every_rank_live(qtbot, tmp_path):
    """``memviz record --connect`` of a torchrun job: one run in the list, its other
    rank joining it as it streams, and the Ranks view naming the highest rank."""
    from memviz.gui.app import make_app
    from memviz.gui.axes import format_bytes
    from memviz.gui.main_window import MainWindow

    make_app()
    window = MainWindow()
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    listener = window.external.wait_for_programs()
    proc = subprocess.Popen(
        [*MEMVIZ, "record", "--detail", "all", "--connect", str(listener.address), "--",
         "python", "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
         str(SCRIPT), str(tmp_path / "profiler")],
        env={**os.environ, TOKEN_ENV: listener.token}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        qtbot.waitUntil(lambda: any(r.ranks for r in window.runs.values()), timeout=WAIT_MS)
        rank_zero = next(r for r in window.runs.values() if r.rank == 0)
        qtbot.waitUntil(lambda: rank_zero.finished and rank_zero.ranks[1].finished,
                        timeout=WAIT_MS)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        window.refresh()
        # rank 1 is a run of its own in the list, and a rank of rank 0's run
        assert sorted(r.rank for r in window.runs.values()) == [0, 1]
        assert rank_zero.ranks[1].state == "finished" and len(rank_zero.ranks[1].steps) == 3
        window.tabs.setCurrentWidget(window.ranks_view)
        window.select_run(rank_zero.run_id)
        window.refresh()
        view = window.ranks_view
        assert view.table.rowCount() == 3  # rank 0, rank 1, their sum
        for row, rank_run in enumerate((rank_zero, rank_zero.ranks[1])):
            exact = rank_run.worker_summary["tracking"]["tracked_bytes"]  # not a sample's
            assert view.table.item(row, 1).text() == format_bytes(exact)
        assert view.why.text().startswith("rank 1 peaks highest, +64 KiB over rank 0: "
                                          "inputs +64 KiB")
        # drawn (offscreen, a picture is a paint): the plot's range takes in the sum
        sum_peak = rank_table(all_ranks(rank_zero))[-1].peak_bytes
        qtbot.waitUntil(lambda: not window.grab().isNull()
                        and view.plot.getViewBox().viewRange()[1][1] >= sum_peak,
                        timeout=WAIT_MS)
        picture = window.grab()
        picture.save(str(DOCS_VIEWS / "ranks-torchrun.png"))
    finally:
        proc.kill()
        listener.close()
        window.close()
