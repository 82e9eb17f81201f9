"""A retag moves an allocation's bytes back to its birth in the timeline, whatever
order the samples and events arrive in, and in a file read back."""

from __future__ import annotations

import numpy as np

from memviz.core.categories import CATEGORIES, CODE, SAMPLE_PREFIX
from memviz.core.run import Run
from memviz.core.spec import RunSpec
from memviz.core.tensors import ALLOC, RETAG

STATE, TEMP = CODE["optimizer_state"], CODE["temporary"]


def _samples(times: list[float], temporary: list[float], state: list[float]) -> dict:
    n = len(times)
    columns = {"t": np.array(times), "tracked_total": np.array(temporary) + np.array(state)}
    for c in CATEGORIES:
        columns[SAMPLE_PREFIX + c] = np.zeros(n)
    columns[SAMPLE_PREFIX + "temporary"] = np.array(temporary, dtype=float)
    columns[SAMPLE_PREFIX + "optimizer_state"] = np.array(state, dtype=float)
    return {"type": "samples", "columns": columns}


def _events(t: list[float], ids: list[int], kinds: list[int], nbytes: list[int],
            categories: list[int]) -> dict:
    n = len(t)
    return {"type": "tensor_events", "columns": {
        "t": np.array(t), "id": np.array(ids, np.int64), "kind": np.array(kinds, np.uint8),
        "nbytes": np.array(nbytes, np.int64), "category": np.array(categories, np.uint8),
        "offset": np.zeros(n, np.int64),
        **{c: np.full(n, -1, np.int32) for c in ("dtype", "shape", "device", "module", "op",
                                                  "stack")},
        "phase": np.zeros(n, np.int16), "step": np.zeros(n, np.int32)}}


def _column(run: Run, category: str) -> list[float]:
    return run.samples.column(SAMPLE_PREFIX + category).tolist()


def test_a_retag_moves_the_bytes_of_every_sample_since_the_allocation():
    """1000 bytes made at t=1 as temporary, known as state at t=3; samples at 0, 2, 4,
    then one taken at 2.5 that arrives after the retag."""
    run = Run(RunSpec(model="m"))
    run.apply_all([
        _events([1.0], [0], [ALLOC], [1000], [TEMP]),
        _samples([0.0, 2.0], [0, 1000], [0, 0]),
        _events([3.0], [0], [RETAG], [1000], [STATE]),
    ])
    assert _column(run, "temporary") == [0, 0]
    assert _column(run, "optimizer_state") == [0, 1000]
    run.apply_all([_samples([2.5, 4.0], [1000, 0], [0, 1000])])  # 2.5: taken before it
    assert _column(run, "temporary") == [0, 0, 0, 0]
    assert _column(run, "optimizer_state") == [0, 1000, 1000, 1000]
    assert run.samples.column("tracked_total").tolist() == [0, 1000, 1000, 1000]
    assert int(run.tensors.rows.column("category")[0]) == STATE


def test_a_retag_leaves_samples_before_the_allocation_and_other_allocations_alone():
    run = Run(RunSpec(model="m"))
    run.apply_all([
        _events([0.5, 1.5], [0, 1], [ALLOC, ALLOC], [300, 700], [TEMP, TEMP]),
        _samples([0.0, 1.0, 2.0], [0, 300, 1000], [0, 0, 0]),
        _events([2.5], [1], [RETAG], [700], [STATE]),
        _samples([3.0], [300], [700]),
    ])
    assert _column(run, "temporary") == [0, 300, 300, 300]
    assert _column(run, "optimizer_state") == [0, 0, 700, 700]


def test_a_recorded_file_reads_back_with_the_moved_bytes(tmp_path):
    from memviz.snapshot import Recorder, open_run

    path = tmp_path / "retag.memviz"
    spec = RunSpec(model="m")
    recorder = Recorder(path, spec.to_dict())
    recorder.write([
        _events([1.0], [0], [ALLOC], [1000], [TEMP]),
        _samples([0.0, 2.0], [0, 1000], [0, 0]),
        _events([3.0], [0], [RETAG], [1000], [STATE]),
    ])
    recorder.finish("finished")
    run = open_run(path)
    assert _column(run, "temporary") == [0, 0]
    assert _column(run, "optimizer_state") == [0, 1000]
