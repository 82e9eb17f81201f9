"""The estimator: exact parameters, gradients and optimizer state; activations in budget."""

from __future__ import annotations

import json

import pytest

from memviz.core.spec import RunSpec
from memviz.estimate import EstimateError, architecture_of, predict
from memviz.estimate.architecture import PRESET_ARCHITECTURES

from .conftest import run_worker

BUDGET = 0.10


@pytest.mark.parametrize("name", sorted(PRESET_ARCHITECTURES))
def test_described_presets_have_exactly_the_built_parameters(name):
    from memviz.models import load_task

    model = load_task(RunSpec(model=name)).model
    shapes = sorted(tuple(p.shape) for p in model.parameters())
    assert sorted(architecture_of(name).shapes()) == shapes


def after_step(run) -> dict[str, int]:
    return [m for m in run.tensors.marks if m["label"] == "after_optimizer_step"][-1][
        "live_by_category"]


def test_default_model_state_is_exact_and_the_peak_within_budget(gpt2_train_run):
    run = gpt2_train_run
    estimate = predict(run.spec)
    live = after_step(run)
    params = run.model["parameter_bytes"]
    assert estimate.by_category["parameter"] == live["parameter"] == params
    # AdamW: two fp32 states per trainable parameter and a 4-byte step per tensor
    assert estimate.by_category["optimizer_state"] == live["optimizer_state"] == \
        2 * params + 4 * run.model["trainable_parameter_tensors"]
    measured = run.worker_summary["tracking"]["tracked_bytes"]
    assert abs(estimate.peak_bytes / measured - 1) < BUDGET, (estimate.peak_bytes, measured)


@pytest.mark.slow
@pytest.mark.parametrize("model, optimizer", [("llama-tiny", "adafactor"),
                                              ("conv-lm", "sgd-momentum"),
                                              ("bert-tiny", "sgd")])
def test_optimizer_state_and_gradients_are_exact(model, optimizer):
    spec = dict(model=model, optimizer=optimizer, steps=2, batch_size=2, seq_len=64)
    run, _ = run_worker(**spec)
    assert run.state == "finished", run.error
    estimate = predict(RunSpec(**spec))
    live = after_step(run)
    assert live["optimizer_state"] == estimate.by_category.get("optimizer_state", 0)
    assert live["gradient"] == run.model["trainable_parameter_bytes"]
    measured = run.worker_summary["tracking"]["tracked_bytes"]
    assert abs(estimate.peak_bytes / measured - 1) < BUDGET, (estimate.peak_bytes, measured)


def test_techniques_move_the_prediction_the_way_they_move_memory():
    base = predict(RunSpec())
    assert predict(RunSpec(techniques=[{"name": "low-precision"}])).by_category[
        "parameter"] * 2 == base.by_category["parameter"]
    lora = predict(RunSpec(techniques=[{"name": "lora", "params": {"r": 8}}]))
    assert lora.by_category["optimizer_state"] < 0.05 * base.by_category["optimizer_state"]
    assert lora.by_category["parameter_frozen"] == base.by_category["parameter"]
    zero = predict(RunSpec(techniques=[{"name": "zero", "params": {"world_size": 2}}]))
    assert zero.per_rank and zero.by_category["optimizer_state"] == \
        base.by_category["optimizer_state"] // 2
    accum = predict(RunSpec(techniques=[{"name": "grad-accum", "params": {"micro_batches": 4}}]))
    assert accum.by_category["activation"] < 0.3 * base.by_category["activation"]
    generate = predict(RunSpec(mode="generate", techniques=[
        {"name": "kv-cache", "params": {"kind": "static"}}]))
    # 2 (K and V) × 4 layers × batch 4 × (256 + 32) positions × 256 wide × 4 bytes
    assert generate.by_category["kv_cache"] == 2 * 4 * 4 * 288 * 256 * 4


def test_what_cannot_be_estimated_says_why(tmp_path):
    with pytest.raises(EstimateError, match="factories"):
        architecture_of("mymodels:build")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(EstimateError, match="not 't5'"):
        architecture_of(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(EstimateError, match="cannot read"):
        architecture_of(str(tmp_path))


def test_a_config_json_directory_is_described_like_the_preset(tmp_path):
    from memviz.models.presets import pretrained_path

    arch = architecture_of(pretrained_path("minilm-l6"))
    assert arch == PRESET_ARCHITECTURES["minilm-l6"]
