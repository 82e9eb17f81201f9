"""Technique comparison: sets parsed, run in real workers, reported as a table, JSON, HTML."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from memviz.compare import Comparison, parse_set, sets_from_texts
from memviz.core.spec import RunSpec, SpecError

TINY = ["--model", "gpt2-tiny", "--steps", "2", "--batch-size", "2", "--seq-len", "64"]


def test_sets_are_parsed_as_the_cli_writes_them():
    s = parse_set("lora:r=4,alpha=8,checkpointing,optimizer=adafactor")
    assert s.techniques == [{"name": "lora", "params": {"r": 4, "alpha": 8}},
                            {"name": "checkpointing", "params": {}}]
    assert s.options == {"optimizer": "adafactor"}
    assert parse_set("baseline").techniques == []
    assert [t.name for t in sets_from_texts(["amp", "amp,checkpointing"])] == [
        "baseline", "amp", "amp,checkpointing"]
    for bad, message in (("", "empty"), ("r=4", "follows no technique"),
                         ("optimizer=lion", "optimizer must be"), ("amp,,lora", "empty piece"),
                         ("teleport", "no technique named")):
        with pytest.raises(SpecError, match=message):
            parse_set(bad)


@pytest.mark.slow
def test_compare_cli_writes_the_table_json_and_an_offline_report(tmp_path):
    report, summary = tmp_path / "report.html", tmp_path / "compare.json"
    saved = tmp_path / "comparison.memviz"
    done = subprocess.run(
        [sys.executable, "-m", "memviz", "compare", *TINY, "--set", "amp",
         "--set", "amp,optimizer=sgd", "-o", str(report), "--summary", str(summary),
         "--save", str(saved)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "[1/3] baseline: running, simulated peak" in done.stderr
    # before the first set runs, the terminal says what the wait is for
    first = done.stderr.index("simulating on fake tensors, for the predictions: baseline")
    assert first < done.stderr.index("[1/3] baseline: running")
    lines = done.stdout.splitlines()
    assert lines[0].startswith("set ") and [ln.split()[0] for ln in lines[2:]] == [
        "baseline", "amp", "amp,optimizer=sgd"]

    sets = json.loads(summary.read_text())["sets"]
    assert [s["name"] for s in sets] == ["baseline", "amp", "amp,optimizer=sgd"]
    for s in sets:
        for key in ("techniques", "peak", "peak_by_category", "saving_vs_baseline",
                    "step_seconds_median", "loss_final", "predicted_peak_bytes",
                    "flops_per_step"):
            assert s[key] is not None, (s["name"], key)
    base, amp, sgd = sets
    # each set's prediction is its step simulated on fake tensors: the same bytes
    for s in sets:
        assert s["prediction_source"] == "simulation"
        assert s["predicted_peak_bytes"] == s["peak"]["tracked_bytes"], s["name"]
        assert s["predicted_by_category"] == s["peak_by_category"], s["name"]
    assert base["saving_vs_baseline"] == {"bytes": 0, "percent": 0.0}
    assert sgd["peak_by_category"].get("optimizer_state", 0) == 0
    assert sgd["saving_vs_baseline"]["bytes"] > amp["saving_vs_baseline"]["bytes"] > 0
    # the same model and shapes: autocast changes the dtype, not the count of FLOPs
    assert amp["flops_per_step"] == base["flops_per_step"] > 0
    assert amp["techniques"] == [{"name": "amp", "params": {"dtype": "bf16"},
                                  "report": amp["techniques"][0]["report"]}]

    page = report.read_text()
    assert page.count("<svg") == 3 and "amp,optimizer=sgd" in page
    assert not re.search(r"(src|href)\s*=|https?://|@import|<script", page)

    # the whole comparison in one file: every set's run, and the same figures
    from memviz.compare import load_comparison
    from memviz.compare.results import entries
    from memviz.snapshot import SnapshotError, open_run

    back = load_comparison(str(saved))
    assert [r.name for r in back.results] == ["baseline", "amp", "amp,optimizer=sgd"]
    assert all(len(r.run.steps) == 2 and len(r.run.tensors) > 0 for r in back.results)
    reopened = entries(back.results)
    for old, new in zip(sets, reopened, strict=True):
        assert new["peak"] == old["peak"] and new["peak_by_category"] == old["peak_by_category"]
        assert new["predicted_peak_bytes"] == old["predicted_peak_bytes"]
    with pytest.raises(SnapshotError, match="a whole comparison"):
        open_run(saved)

    # opened three times in one process: its runs' private copies live while it does,
    # and nothing is left behind when it exits
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    code = ("import os, sys; from memviz.compare import load_comparison;"
            "[load_comparison(sys.argv[1]) for _ in range(3)];"
            "print(len(os.listdir(os.environ['TMPDIR'])))")
    done = subprocess.run([sys.executable, "-c", code, str(saved)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == 3 and os.listdir(scratch) == []


def test_compare_refuses_a_wrong_set_before_running(tmp_path):
    done = subprocess.run([sys.executable, "-m", "memviz", "compare", *TINY,
                           "--set", "quantize"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "set 'quantize'" in done.stderr and "lora" in done.stderr


def _worker_span(run, steps_only: bool) -> tuple[float, float]:
    """Wall-clock seconds a run's worker spent in its steps (or from its start to its
    last phase)."""
    phases = [p for p in run.phases if not steps_only or (p.step is not None and p.step >= 0)]
    begin = min(p.begin for p in phases) if steps_only else 0.0
    return run.t0_wall + begin, run.t0_wall + max(p.end for p in phases)


@pytest.mark.slow
def test_sets_are_simulated_side_by_side_and_never_beside_a_measured_step():
    from memviz.compare.predictions import simulation_lanes

    base = RunSpec(model="gpt2-tiny", steps=2, batch_size=2, seq_len=64)
    sets = [parse_set(s) for s in ("baseline", "checkpointing", "optimizer=sgd")]
    comparison = Comparison(base, sets)
    simulations = {}
    while not comparison.finished:
        comparison.poll()
        for upcoming in comparison.upcoming.queue:
            if upcoming.simulated is not None:
                simulations[upcoming.chosen.name] = upcoming.simulated
        comparison.wait(0.05)
    results = comparison.results
    assert [r.name for r in results] == ["baseline", "checkpointing", "optimizer=sgd"]
    assert sorted(simulations) == sorted(r.name for r in results)
    assert all(s.state == "finished" for s in simulations.values())
    # each prediction is its simulation, the measured peak to the byte
    for result in results:
        assert result.estimate["source"] == "simulation"
        assert result.estimate["peak_bytes"] == \
            result.run.worker_summary["tracking"]["tracked_bytes"] > 0
    simulated = [_worker_span(s, steps_only=False) for s in simulations.values()]
    measured = [_worker_span(r.run, steps_only=True) for r in results]
    for sim_begin, sim_end in simulated:  # a measured step never shares the CPU with one
        assert all(sim_end <= begin or sim_begin >= end for begin, end in measured)
    if simulation_lanes() > 1:  # and they run side by side, a core each
        spans = sorted(simulated)
        assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


@pytest.mark.slow
def test_greedy_stack_keeps_what_helps_and_stops():
    base = RunSpec(model="gpt2-tiny", mode="infer", steps=1, batch_size=2, seq_len=64)
    comparison = Comparison(base, greedy=True)
    results = comparison.run_all(interval=0.1)
    # baseline, then the one inference candidate (int8 weights); nothing left to add
    assert [r.name for r in results] == ["baseline", "quantize"]
    assert all(r.ok for r in results)
    assert results[1].peak() < results[0].peak() * 0.98
    assert comparison.stack.name == "quantize" and comparison.finished
    # int8 weights simulate too: each prediction is the measured peak to the byte
    assert all(r.estimate["source"] == "simulation"
               and r.estimate["peak_bytes"] == r.run.worker_summary["tracking"]["tracked_bytes"]
               for r in results)


def test_a_set_that_cannot_be_simulated_is_predicted_by_the_closed_form():
    from memviz.compare.predictions import simulable, simulated_estimate
    from memviz.core.run import Run

    base = RunSpec(model="gpt2-tiny", steps=2)
    assert simulable(base) and simulable(parse_set("zero").spec(base))
    for unsimulable in (RunSpec(model="gpt2-tiny", mode="generate"),
                        RunSpec(model="gpt2-tiny", track="samples")):
        assert not simulable(unsimulable)
    simulated = Run(base)
    simulated.fail("simulation", "cannot simulate: aten.nonzero (its output's size "
                   "depends on the values)")
    estimate, why = simulated_estimate(base, simulated)
    assert estimate["peak_bytes"] > 0 and "source" not in estimate
    assert why.startswith("simulation did not finish (cannot simulate: aten.nonzero")



def test_a_simulation_that_cannot_start_leaves_the_set_its_closed_form():
    from memviz.compare.predictions import Upcomings

    def no_worker(run):
        raise OSError("the warm parent did not fork a worker")

    upcoming = Upcomings(simulate=True, start_simulation=no_worker, lanes=2)
    pending = [parse_set("baseline"), parse_set("checkpointing")]
    upcoming.fill(pending, lambda chosen: chosen.spec(RunSpec(model="gpt2-tiny", steps=2)),
                  lambda chosen: None)
    assert not pending and not upcoming.simulating()
    first = upcoming.next_ready()
    assert first.chosen.name == "baseline" and first.estimate["peak_bytes"] > 0
    assert first.why.startswith("simulation did not finish (could not start the worker: "
                                "the warm parent did not fork a worker)")
    assert upcoming.next_ready().chosen.name == "checkpointing" and not upcoming


def test_an_ended_simulation_frees_its_lane_and_the_sets_keep_their_order():
    """One lane: each simulation starts as soon as the one before it has ended (taking
    the next pending set frees the lane), and the sets run in the order asked."""
    import threading

    from memviz.compare.predictions import Upcomings

    started: list[tuple[str, threading.Event]] = []

    def start(run):
        names = "+".join(t["name"] for t in run.spec.techniques) or "baseline"
        started.append((names, threading.Event()))
        return SimpleNamespace(done=started[-1][1])

    upcoming = Upcomings(simulate=True, start_simulation=start, lanes=1)
    pending = [parse_set("baseline"), parse_set("checkpointing"), parse_set("lora")]
    spec_of = lambda chosen: chosen.spec(RunSpec(model="gpt2-tiny", steps=2))  # noqa: E731
    upcoming.fill(pending, spec_of, lambda chosen: None)
    for _ in range(2):
        assert len(upcoming.simulating()) == 1
        started[-1][1].set()
        upcoming.fill(pending, spec_of, lambda chosen: None)  # the next, in the freed lane
    assert [name for name, _ in started] == ["baseline", "checkpointing", "lora"]
    assert upcoming.next_ready() is None  # a set waits for every simulation
    started[-1][1].set()
    assert [upcoming.next_ready().chosen.name for _ in range(3)] == [
        "baseline", "checkpointing", "lora"]


def test_a_cancel_that_lands_while_a_simulation_starts_still_ends_the_comparison():
    """Ctrl-C's handler can run in the middle of taking a set (while its simulation's
    worker starts): the set taken after the cancel is dropped, and the comparison ends
    instead of waiting for it for ever."""
    import threading

    comparison = Comparison(RunSpec(model="gpt2-tiny", steps=2),
                            [parse_set("baseline"), parse_set("amp")], warm_start=False)

    def start_while_cancelled(run):
        comparison.cancel()
        ended = threading.Event()
        ended.set()
        return SimpleNamespace(done=ended, request_stop=lambda: None, kill=lambda: None)

    comparison.upcoming.start_simulation = start_while_cancelled
    try:
        for _ in range(3):
            comparison.poll()
        assert comparison.current is None  # no set started after the cancel
        assert comparison.finished and not comparison.results
    finally:
        comparison.kill()


@pytest.mark.slow
def test_fit_finds_the_largest_batch_under_a_cap_and_refuses_the_next():
    from memviz.compare.fit import FitSearch, measured_peak, run_capped
    from memviz.session.warm import WarmStart

    base = RunSpec(model="gpt2-tiny", steps=2, seq_len=256)
    # measured as the search measures: in workers forked from a warm parent (whose
    # imports a fresh worker lacks, so their RSS differs by tens of MiB)
    warm = WarmStart()
    try:
        two, three = (measured_peak(run_capped(RunSpec(model="gpt2-tiny", steps=2,
                                                       seq_len=256, batch_size=b), 1 << 40,
                                               warm=warm)) for b in (2, 3))
    finally:
        warm.close()
    assert three - two > 20 << 20  # a batch row of 256 tokens costs tens of MiB
    limit = (two + three) // 2
    result = FitSearch(base, limit).run()
    assert (result.largest, result.refused) == (2, 3), result.probes
    assert result.predicted is not None and result.overhead_bytes > 0
    refused = next(p for p in result.probes if p.value == 3)
    assert not refused.fits and "over the memory cap" in refused.message
    assert all(p.fits == (p.value <= 2) for p in result.probes)
    # each probe's time, and the part of it outside its steps (start, load, wind-up): all
    # of it for a probe stopped at the cap before its first step ended
    assert all(0 < p.outside_steps <= p.seconds for p in result.probes), result.probes
    assert all(p.outside_steps < p.seconds for p in result.probes if p.fits), result.probes


def test_a_capped_worker_is_killed_not_the_machine():
    from memviz.compare.fit import run_capped

    run = run_capped(RunSpec(model="gpt2-tiny", steps=50, batch_size=8), 300 << 20)
    assert run.state == "failed" and run.error["kind"] == "oom"
    assert "over the memory cap of 300 MiB" in run.error["message"]
    assert len(run.steps) < 50


def test_fit_sizes_are_parsed_in_binary_units():
    from memviz.cli.fit_cmd import parse_size

    assert parse_size("24GiB") == 24 << 30 and parse_size("512m") == 512 << 20
    assert parse_size("1.5G") == 3 << 29
    for bad in ("", "lots", "12 parsecs", "0GiB"):
        with pytest.raises(SpecError):
            parse_size(bad)


def test_a_damaged_comparison_file_says_which_set(tmp_path):
    from memviz.compare import load_comparison
    from memviz.snapshot import SnapshotError
    from memviz.snapshot.comparison_file import write_comparison

    junk = tmp_path / "junk.memviz"
    junk.write_bytes(b"not a database at all")
    path = tmp_path / "comparison.memviz"
    write_comparison(path, RunSpec().to_dict(), [{"name": "amp"}], [str(junk)])
    with pytest.raises(SnapshotError, match=r"set 'amp'.*not an SQLite file"):
        load_comparison(str(path))
    with pytest.raises(FileExistsError):
        write_comparison(path, RunSpec().to_dict(), [], [])
