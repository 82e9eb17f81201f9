"""memviz in a user's day: ``track()`` hands back figures a program can use (and a
notebook shows), and a pytest marker fails a test that uses too much memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from .conftest import WORKER_DEADLINE_S

pytest_plugins = ["pytester"]

LOOP = """
import json, sys, torch
import memviz

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(),
                            torch.nn.Linear(1024, 256))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
with memviz.track(sys.argv[1], force=True) as tracking:
    for _ in range(3):
        model(torch.randn(64, 256)).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
result = tracking.result
print(json.dumps({"peak": result.peak_bytes, "by_category": result.peak_by_category,
                  "modules": result.peak_by_module, "steps": len(result.steps),
                  "losses": [s["loss"] for s in result.steps], "path": str(result.path),
                  "file_peak": result.summary["peak"]["tracked_bytes"],
                  "max_gradient": result.summary["max_by_category"]["gradient"],
                  "html": result._repr_html_(), "repr": repr(result),
                  "same": memviz.stop() is None}))
"""


def test_track_returns_the_runs_figures(tmp_path):
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    out = tmp_path / "loop.memviz"
    done = subprocess.run([sys.executable, str(script), str(out)], capture_output=True,
                          text=True, timeout=WORKER_DEADLINE_S)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.splitlines()[-1])
    weights = (256 * 1024 + 1024 + 1024 * 256 + 256) * 4
    assert got["steps"] == 3
    assert got["path"] == str(out) and got["peak"] == got["file_peak"]
    assert got["by_category"]["parameter"] == weights
    assert got["max_gradient"] == weights  # every gradient, once the backward is done
    assert sum(got["by_category"].values()) == got["peak"]
    assert got["modules"] and all(b > 0 for _, b in got["modules"])
    assert "<table>" in got["html"] and "tracked peak" in got["html"]
    assert f"{got['peak'] / 2**20:,.1f} MiB" in got["html"]
    assert got["repr"].startswith("TrackResult(finished, peak ")
    assert got["same"]  # stop() with nothing tracking says so


PASSES_AND_FAILS = """
import pytest, torch

@pytest.mark.memviz(limit="64 MiB")
def test_small():
    x = torch.ones(1024, 1024)  # 4 MiB
    assert x.sum() > 0

@pytest.mark.memviz(limit="8 MiB")
def test_too_big():
    keep = [torch.ones(1024, 1024) for _ in range(4)]  # 16 MiB live at once
    assert len(keep) == 4

@pytest.mark.memviz(limit="1 GiB", activation="1 MiB")
def test_category_limit():
    model = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.ReLU(),
                                torch.nn.Linear(2048, 512))
    model(torch.randn(256, 512)).pow(2).mean().backward()  # 2 MiB saved for backward

def test_unmarked():
    assert torch.ones(4096, 4096).sum() > 0
"""


def test_the_pytest_marker_fails_a_test_over_its_limit(pytester):
    pytester.makepyfile(test_memory=PASSES_AND_FAILS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2, failed=2)
    text = result.stdout.str()
    assert "test_too_big used more memory than its memviz limit:" in text
    assert "tracked peak: 16.0 MiB > limit 8.0 MiB" in text
    assert "live at the tracked peak (16.0 MiB), by category:" in text
    assert "test_category_limit used more memory than its memviz limit:" in text
    assert "activations (saved for backward): " in text and "> limit 1.0 MiB" in text


def test_the_marker_refuses_a_limit_it_cannot_read(pytester):
    pytester.makepyfile(test_bad=textwrap.dedent("""
        import pytest

        @pytest.mark.memviz(limit="a lot")
        def test_x():
            pass

        @pytest.mark.memviz(activations="1 GiB")
        def test_y():
            pass
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    text = result.stdout.str() + result.stderr.str()
    assert "memviz marker: a memory size is a number and a unit" in text
    assert "memviz marker: no category 'activations'" in text
    assert result.ret != 0


ORDER = textwrap.dedent("""
    import gc
    import json
    import os
    import weakref

    import pytest
    import torch

    import memviz

    def _train(width):
        model = torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(),
                                    torch.nn.Linear(width, width))
        optimizer = torch.optim.AdamW(model.parameters())
        for _ in range(2):
            model(torch.randn(16, width)).sum().backward()
            optimizer.step()
            optimizer.zero_grad()
        return weakref.ref(model)

    @pytest.mark.parametrize("width", [256, 320, 384, 448, 512])
    @pytest.mark.memviz(limit="1 GiB")
    def test_earlier(width):
        _train(width)

    def test_measured():
        gone = _train(128)
        gc.collect()
        assert gone() is None  # nothing kept it: not the tracking of the marked tests
        with memviz.track(output=os.environ["OUT"], force=True) as tracking:
            _train(64)
        result = tracking.result
        with open(os.environ["FIGURES"], "w") as f:
            json.dump({"peak": result.peak_bytes, "by_category": result.peak_by_category}, f)
""")


def test_a_marked_tests_figures_do_not_depend_on_the_tests_before_it(pytester, tmp_path,
                                                                    monkeypatch):
    """Tracking holds nothing of the program once it stops: the models of five earlier
    marked tests are collected, and a later tracking's figures are what they are alone."""
    pytester.makepyfile(test_order=ORDER)
    figures = {}
    for name, selection in (("alone", ["-k", "test_measured"]), ("after five", [])):
        out, json_path = tmp_path / f"{name}.memviz", tmp_path / f"{name}.json"
        monkeypatch.setenv("OUT", str(out))
        monkeypatch.setenv("FIGURES", str(json_path))
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", *selection)
        result.assert_outcomes(passed=1 if name == "alone" else 6)
        figures[name] = json.loads(json_path.read_text())
    assert figures["after five"] == figures["alone"]
    assert figures["alone"]["peak"] > 0
