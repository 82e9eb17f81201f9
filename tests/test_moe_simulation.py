"""Mixtures of experts simulated: routing is data, so a simulation assumes it (balanced
by default, the worst case on request), says so, and equals a measured run that is
routed the same way, allocation for allocation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from memviz.core.categories import CODE
from memviz.core.spec import RunSpec, SpecError

from .conftest import run_worker
from .model_zoo import save_hf

WORKLOAD = {"steps": 2, "batch_size": 4, "seq_len": 64, "data": "random", "detail": "all",
            "optimizer": "sgd"}


@pytest.fixture(scope="module")
def moe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("moe")
    models = {kind: save_hf(kind, folder) for kind in ("mixtral", "olmoe")}
    for kind in ("mixtral", "olmoe"):  # the same weights on transformers' eager expert path
        eager = folder / f"{kind}-eager"
        eager.mkdir()
        for item in models[kind].iterdir():
            (eager / item.name).write_bytes(item.read_bytes())
        config = json.loads((eager / "config.json").read_text())
        (eager / "config.json").write_text(json.dumps({**config,
                                                      "experts_implementation": "eager"}))
        models[f"{kind}-eager"] = eager
    return models


def _figures(run):
    tracking = run.worker_summary["tracking"]
    return tracking["tracked_bytes"], tracking["peak_by_category"], tracking["max_by_category"]


def _allocations(run) -> list[tuple[int, int]]:
    rows = run.tensors.rows
    return sorted(zip(rows.column("nbytes").tolist(), rows.column("category").tolist(),
                      strict=True))


@pytest.mark.parametrize("kind", ["mixtral", "olmoe"])
def test_the_default_expert_path_simulates_exactly(moe, kind):
    """transformers' grouped_mm path: its fake kernel checks what the CUDA kernel takes
    (bfloat16); the CPU kernel the simulation stands on takes float32 too."""
    real, _ = run_worker(model=str(moe[kind]), **WORKLOAD)
    fake, _ = run_worker(model=str(moe[kind]), simulate=True, **WORKLOAD)
    assert real.state == fake.state == "finished", (real.error, fake.error)
    assert _figures(fake) == _figures(real)
    # the assumption is said, though this path allocates alike whatever the routing
    assert fake.worker_summary["routing"] == {
        "routing": "balanced", "assumed": True, "forced": False, "experts": 4 if
        kind == "mixtral" else 8, "layers": 2, "expert_paths": ["grouped_mm"]}
    assert real.worker_summary["routing"]["routing"] == "the model's own"


@pytest.mark.parametrize("kind,routing", [("mixtral-eager", "balanced"),
                                          ("mixtral-eager", "worst"),
                                          ("olmoe-eager", "balanced")])
def test_the_eager_expert_path_simulates_under_the_routing_it_assumes(moe, kind, routing):
    """The eager path allocates each expert's share as routed: simulated with the
    assumption, measured with the routers made to route so, the same allocations."""
    real, _ = run_worker(model=str(moe[kind]), routing=routing, **WORKLOAD)
    fake, _ = run_worker(model=str(moe[kind]), routing=routing, simulate=True, **WORKLOAD)
    assert real.state == fake.state == "finished", (real.error, fake.error)
    assert _figures(fake) == _figures(real)
    assert _allocations(fake) == _allocations(real)
    assert fake.worker_summary["routing"]["assumed"] is True
    assert real.worker_summary["routing"]["forced"] is True
    # each expert gathers its tokens' positions (torch.where: two int64 a token), kept
    # for backward: 2 layers × 2 steps of every expert's share when balanced (the 256
    # tokens × 2 choices spread over the experts), of two experts taking all 256 tokens
    # at worst
    experts = 4 if kind.startswith("mixtral") else 8
    tokens = WORKLOAD["batch_size"] * WORKLOAD["seq_len"]
    expected = {"balanced": [tokens * 2 // experts] * (4 * experts),
                "worst": [tokens] * (4 * 2)}
    assert _tokens_each_expert_took(real) == expected[routing]


def _tokens_each_expert_took(run) -> list[int]:
    """How many tokens each expert's forward gathered, from the positions it kept."""
    rows = run.tensors.rows
    ops = [run.tensors.string("op", int(o)) for o in rows.column("op")]
    where = np.array([op == "nonzero.default" for op in ops])
    kept = rows.column("category") == CODE["activation"]
    return sorted(int(n) // 16 for n in rows.column("nbytes")[where & kept])


def test_without_an_assumption_the_eager_path_is_not_a_guess_on_values(moe):
    """A simulation given no routing assumes balanced and says so (it used to stop at
    aten.nonzero, whose output size is data)."""
    fake, _ = run_worker(model=str(moe["mixtral-eager"]), simulate=True, **WORKLOAD)
    assert fake.state == "finished", fake.error
    assert fake.worker_summary["routing"]["routing"] == "balanced"
    assert fake.worker_summary["routing"]["forced"] is False


def test_routing_is_one_of_the_known_ones():
    with pytest.raises(SpecError, match="routing must be one of balanced, worst"):
        RunSpec(routing="uniform").validate()
