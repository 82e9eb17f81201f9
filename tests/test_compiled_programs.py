"""A compiled program compiles under memviz exactly as it would alone: the same frames,
graphs, graph breaks and recompiles on every step, detailed or cheap, and it never
fails where it would not; the run says that it was compiled and what stays unseen.

Real Dynamo on CPU: the eager and aot_eager backends (no C++ compile), and inductor
once, with its cache shared by the runs of this module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memviz.snapshot import open_run

from .conftest import WORKER_DEADLINE_S

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = str(ROOT / "tests" / "programs" / "compiled_loop.py")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    cache = tmp_path_factory.mktemp("inductor-cache")
    return {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}


def _counters(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _alone(backend: str, env: dict) -> dict:
    return _counters(subprocess.run([sys.executable, PROGRAM, backend], capture_output=True,
                                    text=True, timeout=WORKER_DEADLINE_S, env=env))


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_track_leaves_the_compiled_program_as_it_is(backend, env, tmp_path):
    out = tmp_path / "compiled.memviz"
    alone = _alone(backend, env)
    tracked = _counters(subprocess.run(
        [sys.executable, PROGRAM, backend, "track", str(out)], capture_output=True, text=True,
        timeout=WORKER_DEADLINE_S, env=env))
    assert tracked == alone
    assert alone["frames"] == {"ok": 1, "total": 1} and "graph_break" not in alone
    run = open_run(out)
    assert len(run.steps) == 4 and run.state == "finished"
    compiled = run.worker_summary["compiled"]
    assert compiled["frames_compiled"] == 1 and compiled["graph_breaks"] == 0
    assert compiled["recompiles"] == 0 and not compiled["inductor"]


def test_record_of_an_inductor_compiled_loop_runs_every_step_as_compiled(env, tmp_path):
    alone = _alone("inductor", env)
    out, summary = tmp_path / "inductor.memviz", tmp_path / "inductor.json"
    done = subprocess.run([sys.executable, "-m", "memviz", "record", "-o", str(out),
                           "--summary", str(summary), "--detail", "first:2,every:2", "--",
                           "python", PROGRAM, "inductor"], capture_output=True, text=True,
                          timeout=WORKER_DEADLINE_S, env=env, cwd=ROOT)
    assert _counters(done) == alone  # the detailed steps and the cheap ones alike
    report = json.loads(summary.read_text())
    assert len(report["steps"]) == 4 and report["state"] == "finished"
    assert report["compiled"]["inductor"] and report["compiled"]["graph_breaks"] == 0
    assert "inductor's generated code allocates itself" in report["compiled"]["unseen"]
    assert "memviz record: compiled with inductor: buffers that inductor" in done.stderr
    run = open_run(out)
    assert any("compiled with torch.compile: 1 frames, 1 graphs, 0 graph breaks" in line.text
               for line in run.log)
