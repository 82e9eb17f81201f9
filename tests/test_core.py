"""Pure data-model pieces: columns, run application, spec validation, byte labels."""

from __future__ import annotations

import numpy as np
import pytest

from memviz.core.analysis import tracked_peak_time
from memviz.core.columns import Columns
from memviz.core.run import Run
from memviz.core.spec import RunSpec, SpecError
from memviz.core.summary import build_summary
from memviz.core.tensors import ALLOC, FREE
from memviz.gui.axes import byte_tick_spacing, format_bytes


def test_columns_grow_past_capacity_and_fill_missing_with_nan():
    cols = Columns(["t", "a", "b"], capacity=4)
    cols.append({"t": np.arange(3.0), "a": np.ones(3)})
    cols.append({"t": np.arange(3.0, 10.0), "a": np.ones(7), "b": np.full(7, 2.0)})
    assert len(cols) == 10
    np.testing.assert_array_equal(cols.column("t"), np.arange(10.0))
    assert np.isnan(cols.column("b")[:3]).all() and (cols.column("b")[3:] == 2).all()
    assert cols.has_data("b") and cols.has_gaps("b") and not cols.has_gaps("a")
    with pytest.raises(ValueError):
        cols.column("t")[0] = 5.0  # views handed to views are read-only


def test_phase_end_matches_its_begin_by_step_and_name():
    run = Run(RunSpec())
    for step in range(3):
        for name in ("forward", "backward"):
            run.apply({"type": "phase", "t": step + 0.1, "step": step, "name": name,
                       "edge": "begin"})
            run.apply({"type": "phase", "t": step + 0.2, "step": step, "name": name,
                       "edge": "end"})
    assert [(p.step, p.name, p.end) for p in run.phases][-1] == (2, "backward", 2.2)
    assert not np.isnan([p.end for p in run.phases]).any()


def test_summary_peaks_take_the_highest_of_samples_and_steps():
    run = Run(RunSpec(steps=1))
    run.apply({"type": "samples", "columns": {"t": np.array([0.1, 0.2]),
                                              "rss": np.array([100.0, 300.0]),
                                              "peak_rss": np.array([150.0, 320.0])}})
    run.apply({"type": "step_done", "t": 0.3, "step": 0, "loss": 2.0, "seconds": 0.5,
               "tokens": 10, "peak_rss_bytes": 400, "peak_gpu_bytes": None})
    summary = build_summary(run)
    assert summary["peak"] == {"rss_bytes": 400, "gpu_bytes": None, "tracked_bytes": None,
                               "tracked_t": None}
    assert summary["step_seconds_median"] == 0.5
    assert summary["tokens_per_second"] == 20
    # a slow first step does not drag the rate: it is the median step's
    run.apply({"type": "step_done", "t": 0.9, "step": 1, "loss": 2.0, "seconds": 0.1,
               "tokens": 10, "peak_rss_bytes": 400, "peak_gpu_bytes": None})
    run.apply({"type": "step_done", "t": 1.0, "step": 2, "loss": 2.0, "seconds": 0.1,
               "tokens": 10, "peak_rss_bytes": 400, "peak_gpu_bytes": None})
    summary = build_summary(run)
    assert summary["step_seconds_median"] == 0.1 and summary["tokens_per_second"] == 100


@pytest.mark.parametrize("field,value,message", [
    ("mode", "fly", "mode must be one of"),
    ("steps", 0, "steps must be an integer"),
    ("seq_len", 1, "seq_len must be an integer"),
    ("device", "gpu", "device must be cpu"),
    ("lr", -1.0, "lr must be a positive"),
    ("sample_hz", 500.0, "sample_hz must be from 1 to 100"),
])
def test_spec_validation_names_the_bad_option(field, value, message):
    with pytest.raises(SpecError, match=message):
        RunSpec(**{field: value}).validate()


def test_spec_from_dict_refuses_unknown_options():
    with pytest.raises(SpecError, match="unknown option"):
        RunSpec.from_dict({"model": "gpt2-tiny", "warp_drive": True})


@pytest.mark.parametrize("value,spacing,text", [
    (0, 0, "0 B"), (512, 0, "512 B"), (1536, 0, "1.5 KiB"), (256 << 20, 0, "256 MiB"),
    (3 << 30, 0, "3 GiB"), (None, 0, "—"), (float("nan"), 0, "—"),
])
def test_format_bytes(value, spacing, text):
    assert format_bytes(value, spacing) == text


def test_byte_ticks_are_powers_of_two_with_about_one_label_per_70_pixels():
    step = byte_tick_spacing(500 << 20, 400)
    assert step == 128 << 20
    assert byte_tick_spacing(10 << 30, 700) == 1 << 30


def test_ranks_are_summed_on_rank_zeros_clock_holding_each_last_sample():
    from memviz.core.ranks import RankSeries, rank_series, summed

    a = RankSeries("rank 0", np.array([0.0, 1.0, 2.0]), np.array([10.0, 20.0, 30.0]))
    b = RankSeries("rank 1", np.array([0.5, 1.5]), np.array([1.0, 2.0]))
    total = summed([a, b])
    assert total.t.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    # rank 1 holds nothing before it starts and after its last sample
    assert total.values.tolist() == [10.0, 11.0, 21.0, 22.0, 30.0]

    zero, one = Run(RunSpec()), Run(RunSpec(), rank=1)
    zero.t0_wall, one.t0_wall = 100.0, 102.5
    for run in (zero, one):
        run.samples.append({"t": np.array([0.0, 1.0]), "rss": np.array([5.0, 6.0])})
    shifted = rank_series([zero, one], "rss")
    assert shifted[1].t.tolist() == [2.5, 3.5]


def test_a_rank_joins_rank_zeros_run_once():
    run = Run(RunSpec())
    peer = run.add_rank(1, RunSpec(batch_size=2).to_dict())
    assert run.ranks == {1: peer} and peer.rank == 1 and peer.spec.batch_size == 2
    with pytest.raises(ValueError, match="rank 1"):
        run.add_rank(1, RunSpec().to_dict())
    with pytest.raises(ValueError, match="rank 0"):
        run.add_rank(0, RunSpec().to_dict())


def test_the_tracked_peak_is_the_highest_total_with_frees_first_at_an_instant():
    """Against a replay event by event, on a log whose times tie often (on a coarse
    clock a free and an allocation share their instant: the free counts first)."""
    rng = np.random.default_rng(7)
    events: list[tuple[float, int, int, int]] = []  # t, id, kind, nbytes
    live: dict[int, int] = {}
    made = 0  # allocation ids run from 0 without a gap
    for i in range(3000):
        t = float(i // 4)  # four events an instant
        if live and rng.random() < 0.45:
            gone = int(rng.choice(list(live)))
            events.append((t, gone, FREE, live.pop(gone)))
        else:
            live[made] = int(rng.integers(1, 1 << 16))
            events.append((t, made, ALLOC, live[made]))
            made += 1
    run = Run(RunSpec(model="m"))
    run.apply_all([{"type": "tensor_events", "columns": {
        "t": np.array([e[0] for e in events]), "id": np.array([e[1] for e in events]),
        "kind": np.array([e[2] for e in events], np.uint8),
        "nbytes": np.array([e[3] for e in events], np.int64),
        "category": np.zeros(len(events), np.uint8), "offset": np.zeros(len(events), np.int64),
        **{c: np.full(len(events), -1, np.int32) for c in ("dtype", "shape", "device",
                                                            "module", "op", "stack")},
        "phase": np.zeros(len(events), np.uint8), "step": np.zeros(len(events), np.int32)}}])
    best_t, best, total = 0.0, 0, 0
    for t in sorted({e[0] for e in events}):
        at = [e for e in events if e[0] == t]
        total -= sum(e[3] for e in at if e[2] == FREE)
        total += sum(e[3] for e in at if e[2] == ALLOC)
        if total > best:
            best_t, best = t, total
    assert tracked_peak_time(run.tensors) == (best_t, best)
    assert best > 0
