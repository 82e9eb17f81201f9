"""Every technique's memory effect, measured by the tracker in a real worker.

Tiny workloads (batch 4 × 64 tokens, two steps) keep each run to seconds; the
assertions are on exact bytes where they are known, and on the direction and
size of a saving otherwise.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from memviz.core.spec import RunSpec
from memviz.techniques import TECHNIQUES, TechniqueError, check_techniques, parse_technique

from .conftest import run_worker

BASE = {"model": "gpt2-tiny", "batch_size": 4, "seq_len": 64, "steps": 2, "sample_hz": 20}
# gpt2-tiny: 4 blocks of n_embd 256; each block's own parameters:
BLOCK_PARAMS = 2 * 2 * 256 + (256 * 768 + 768) + (256 * 256 + 256) + (256 * 1024 + 1024) + (
    1024 * 256 + 256)
EMBEDDINGS = 256 * 256 + 1024 * 256  # wte (tied to the head) and wpe
FINAL_NORM = 2 * 256


def techniques(*texts: str) -> list[dict]:
    return [parse_technique(t) for t in texts]


def measured(*texts: str, **fields):
    spec = {**BASE, **fields, "techniques": techniques(*texts)}
    run, _ = run_worker(**spec)
    assert run.state == "finished", run.error
    return run


def max_bytes(run, category: str) -> int:
    return run.worker_summary["tracking"]["max_by_category"][category]


def after_step(run) -> dict[str, int]:
    marks = [m for m in run.tensors.marks if m["label"] == "after_optimizer_step"]
    return marks[-1]["live_by_category"]


def report(run, name: str) -> dict:
    return next(t["report"] for t in run.worker_summary["techniques"] if t["name"] == name)


@pytest.fixture(scope="module")
def baseline():
    return measured()


@pytest.fixture(scope="module")
def baseline_infer():
    return measured(mode="infer")


# -- the registry: parsing and refusals, before any worker starts ----------------------

def test_parse_gives_typed_parameters_and_clear_errors():
    assert parse_technique("lora:r=4,alpha=8") == {"name": "lora",
                                                    "params": {"r": 4, "alpha": 8}}
    assert parse_technique("prune:amount=0.7,sparse=true")["params"] == {
        "amount": 0.7, "sparse": True}
    for text, words in [("nope", "no technique named 'nope'"),
                        ("lora:rank=4", "lora has no parameter 'rank'"),
                        ("lora:r=four", "r must be int"),
                        ("prune:sparse=maybe", "sparse must be true or false")]:
        with pytest.raises(TechniqueError, match=words):
            parse_technique(text)


@pytest.mark.parametrize(("texts", "fields", "words"), [
    (["quantize"], {}, "add lora"),
    (["amp:dtype=fp16"], {}, "fp16 autocast is not offered on CPU"),
    (["zero:world_size=1"], {}, "at least 2"),
    (["grad-accum:micro_batches=3"], {}, "does not split into 3"),
    (["amp", "low-precision"], {}, "cannot be combined with"),
    (["checkpointing"], {"mode": "infer"}, "applies to train, not infer"),
    (["cpu-offload"], {}, "needs cuda, not cpu"),
    (["quantize:method=int4-weight", "lora"], {}, "int4-weight needs CUDA"),
    (["prune:sparse=true"], {}, "cannot be trained"),
    (["lora:r=0"], {}, "r must be at least 1"),
    (["lora", "lora"], {}, "more than once"),
])
def test_invalid_combinations_are_refused_with_the_reason(texts, fields, words):
    spec = RunSpec(**{**BASE, **fields, "techniques": techniques(*texts)})
    with pytest.raises(TechniqueError, match=words):
        check_techniques(spec)


def test_cli_refuses_before_starting_a_worker(tmp_path):
    out = tmp_path / "never.memviz"
    result = subprocess.run(
        [sys.executable, "-m", "memviz", "run", "--technique", "quantize", "-o", str(out)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "quantized weights cannot be trained; add lora" in result.stderr
    assert not out.exists()


def test_the_registry_loads_without_torch():
    code = textwrap.dedent("""
        import sys
        from memviz.techniques import TECHNIQUES, check_techniques
        assert len(TECHNIQUES) == 16, len(TECHNIQUES)
        print("torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_memviz_techniques_lists_every_one():
    out = subprocess.run([sys.executable, "-m", "memviz", "techniques"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    for name in TECHNIQUES:
        assert f"\n{name} " in out
    assert "adamw-8bit" in out


# -- model structure --------------------------------------------------------------------

def test_low_precision_halves_parameter_bytes_exactly(baseline):
    run = measured("low-precision:dtype=bf16")
    assert after_step(run)["parameter"] * 2 == after_step(baseline)["parameter"]
    assert after_step(run)["optimizer_state"] < after_step(baseline)["optimizer_state"] * 0.51


def test_bf16_inference_drift_is_measured_against_the_fp32_model():
    run = measured("low-precision:dtype=bf16", mode="infer")
    drift = run.worker_summary["output_drift"]
    # bf16 keeps 8 bits of mantissa: a small, non-zero error, the same argmax almost always
    assert 1e-4 < drift["relative_logit_error"] < 0.05, drift
    assert drift["top1_agreement"] > 0.9


def test_master_weights_keep_an_fp32_copy_as_optimizer_state(baseline):
    run = measured("low-precision:master_weights=true")
    trainable = run.model["trainable_parameter_bytes"]
    # fp32 masters (2× the bf16 weights) plus AdamW's two fp32 states on them
    assert after_step(run)["optimizer_state"] == 2 * trainable + after_step(
        baseline)["optimizer_state"]


def test_layer_drop_removes_exactly_the_dropped_blocks(baseline):
    run = measured("layer-drop:keep=2")
    assert run.model["parameters"] == baseline.model["parameters"] - 2 * BLOCK_PARAMS
    assert report(run, "layer-drop")["kept"] == [0, 3]
    assert max_bytes(run, "activation") < 0.6 * max_bytes(baseline, "activation")


def test_share_layers_stores_one_block_per_group(baseline):
    run = measured("share-layers:group=2")
    assert after_step(run)["parameter"] == after_step(baseline)["parameter"] - 2 * 4 * BLOCK_PARAMS
    assert report(run, "share-layers")["unique_blocks"] == 2


def test_low_rank_factorisation_shrinks_the_linear_weights(baseline):
    run = measured("low-rank:rank=16")
    rep = report(run, "low-rank")
    # every projection of n×m becomes (n + m) × 16 weights
    per_block = (256 + 768 + 256 + 256 + 256 + 1024 + 1024 + 256) * 16
    assert rep["linear_weights_after"] == 4 * per_block
    assert after_step(run)["parameter"] < 0.6 * after_step(baseline)["parameter"]


def test_structured_pruning_rebuilds_smaller_mlps(baseline):
    run = measured("prune:structured=true,amount=0.5")
    removed = 4 * 512 * (256 + 1 + 256)  # per block: 512 rows of c_fc (+bias), 512 cols of c_proj
    assert run.model["parameters"] == baseline.model["parameters"] - removed
    assert report(run, "prune")["mlp_units_removed"] == 4 * 512


def test_mask_pruning_adds_memory_and_says_so(baseline):
    run = measured("prune:amount=0.5")
    rep = report(run, "prune")
    assert rep["linear_weight_bytes_after"] == 2 * rep["linear_weight_bytes_before"]
    assert "adds memory" in rep["note"]
    assert max_bytes(run, "buffer") == rep["linear_weight_bytes_before"]  # the masks


def test_sparse_storage_saves_only_where_the_format_allows(baseline_infer):
    csr_half = measured("prune:sparse=true,amount=0.5", mode="infer")
    csr_most = measured("prune:sparse=true,amount=0.8", mode="infer")
    bsr_half = measured("prune:sparse=true,amount=0.5,block=16", mode="infer")

    def ratio(run):
        rep = report(run, "prune")
        return rep["linear_weight_bytes_after"] / rep["linear_weight_bytes_before"]

    assert 0.98 < ratio(csr_half) < 1.02  # 8 bytes per kept weight: break-even at 50 %
    assert 0.38 < ratio(csr_most) < 0.42
    assert 0.49 < ratio(bsr_half) < 0.52
    frozen = max_bytes(bsr_half, "parameter_frozen") + max_bytes(bsr_half, "parameter")
    assert frozen < 0.6 * max_bytes(baseline_infer, "parameter")
    assert bsr_half.worker_summary["output_drift"]["relative_logit_error"] > 0


def test_progressive_training_grows_the_model_between_stages():
    run = measured("progressive:stages=2", steps=4)
    stages = report(run, "progressive")["stages"]
    assert [(s["first_step"], s["depth"]) for s in stages] == [(0, 2), (2, 4)]
    peaks = [s.tracked_peak_bytes for s in run.steps]
    assert peaks[2] > peaks[1] * 1.3  # stage 2 trains twice the blocks
    assert all(s.loss is not None for s in run.steps)


# -- training strategy ------------------------------------------------------------------

def test_amp_keeps_bf16_activations(baseline):
    run = measured("amp:dtype=bf16")
    assert after_step(run)["parameter"] == after_step(baseline)["parameter"]
    assert max_bytes(run, "activation") < 0.85 * max_bytes(baseline, "activation")


def test_lora_optimizer_state_is_a_sliver_of_full_adamw(baseline):
    run = measured("lora:r=8")
    assert after_step(run)["optimizer_state"] <= 0.05 * after_step(baseline)["optimizer_state"]
    live = after_step(run)
    assert live["parameter_frozen"] == baseline.model["parameter_bytes"]
    assert live["gradient"] == live["parameter"]  # gradients only for the adapters


EIGHT_LAYERS = textwrap.dedent('''
    from transformers import LlamaConfig, LlamaForCausalLM

    def build():
        config = LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=344,
                             num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=256)
        return LlamaForCausalLM(config)
''')


def test_checkpointing_an_eight_layer_model_halves_the_activation_peak(tmp_path):
    factory = tmp_path / "eight.py"
    factory.write_text(EIGHT_LAYERS)
    base = measured(model=f"{factory}:build")
    ckpt = measured("checkpointing", model=f"{factory}:build")
    assert max_bytes(ckpt, "activation") <= 0.5 * max_bytes(base, "activation")
    tracked = ckpt.worker_summary["tracking"]["tracked_bytes"]
    assert tracked < base.worker_summary["tracking"]["tracked_bytes"]
    assert report(ckpt, "checkpointing") == {"via": "transformers", "blocks": 8,
                                             "checkpointed": 8}


def test_checkpointing_plain_models_through_torch_utils_checkpoint():
    base = measured(model="conv-lm")
    ckpt = measured("checkpointing:every=2", model="conv-lm")
    assert report(ckpt, "checkpointing") == {"via": "torch.utils.checkpoint", "blocks": 6,
                                             "checkpointed": 3}
    assert max_bytes(ckpt, "activation") < 0.75 * max_bytes(base, "activation")


def test_gradient_accumulation_quarters_the_activation_peak(baseline):
    run = measured("grad-accum:micro_batches=4")
    ratio = max_bytes(run, "activation") / max_bytes(baseline, "activation")
    assert 0.2 < ratio < 0.32
    assert after_step(run)["gradient"] == after_step(baseline)["gradient"]


@pytest.mark.parametrize(("optimizer", "most"), [
    ("sgd-momentum", None), ("adafactor", 0.05), ("adamw-8bit", 0.3)])
def test_memory_lean_optimizers(baseline, optimizer, most):
    run = measured(optimizer=optimizer)
    state = after_step(run)["optimizer_state"]
    if most is None:  # one momentum buffer per trainable parameter, exactly
        assert state == run.model["trainable_parameter_bytes"]
    else:
        assert 0 < state <= most * after_step(baseline)["optimizer_state"]
    assert run.steps[-1].loss is not None


def test_four_bit_adamw_is_refused_under_the_tensor_tracker():
    from memviz.core.spec import SpecError

    with pytest.raises(SpecError, match="use --track samples"):
        RunSpec(**BASE, optimizer="adamw-4bit").validate()
    RunSpec(**BASE, optimizer="adamw-4bit", track="samples").validate()


# -- deployment -------------------------------------------------------------------------

def test_int8_weight_quantization_quarters_linear_weights(baseline_infer):
    run = measured("quantize:method=int8-weight", mode="infer")
    rep = report(run, "quantize")
    assert rep["conv1d_converted"] == 16  # GPT-2's Conv1D became nn.Linear first
    assert 0.25 <= rep["linear_weight_bytes_after"] / rep["linear_weight_bytes_before"] < 0.26
    assert max_bytes(run, "quantization_state") > 0  # the per-row scales
    drift = run.worker_summary["output_drift"]
    assert 0 < drift["relative_logit_error"] < 0.1 and drift["top1_agreement"] > 0.9


def test_int8_dynamic_packed_weights_are_counted(baseline_infer):
    run = measured("quantize:method=int8-dynamic", mode="infer")
    linear_int8 = 4 * (256 * 768 + 256 * 256 + 256 * 1024 + 1024 * 256)
    biases = 4 * 4 * (768 + 256 + 1024 + 256)
    embeddings = EMBEDDINGS * 4 + (4 * 2 * 2 * 256 + FINAL_NORM) * 4  # and the norms
    assert max_bytes(run, "parameter_frozen") == linear_int8 + biases + embeddings


def test_qlora_trains_adapters_on_an_int8_base(baseline):
    run = measured("quantize:method=int8-weight", "lora:r=8")
    live = after_step(run)
    assert live["parameter_frozen"] < 0.45 * baseline.model["parameter_bytes"]
    assert live["optimizer_state"] <= 0.05 * after_step(baseline)["optimizer_state"]


def test_static_kv_cache_is_allocated_for_the_whole_length():
    dynamic = measured("kv-cache:kind=dynamic", mode="generate", steps=1, max_new_tokens=8)
    static = measured("kv-cache:kind=static", mode="generate", steps=1, max_new_tokens=8)
    # 4 layers × keys and values × batch 4 × 4 heads × 71 tokens × 64 × 4 bytes: the
    # prompt's 64 and 7 of the 8 new ones (the last token is produced, never attended)
    assert max_bytes(dynamic, "kv_cache") == 4 * 2 * 4 * 4 * 71 * 64 * 4
    assert max_bytes(static, "kv_cache") >= max_bytes(dynamic, "kv_cache")
    assert static.worker_summary["output_drift"]["top1_agreement"] == 1.0


def test_allocator_settings_close_the_gap_between_rss_and_live_bytes(baseline):
    from memviz.core.summary import peak_rss_bytes

    run = measured("allocator")
    assert peak_rss_bytes(run) < peak_rss_bytes(baseline)


def test_summary_lists_what_was_applied(baseline):
    from memviz.core.summary import build_summary

    run = measured("grad-accum:micro_batches=2", "amp")
    summary = build_summary(run)
    # equal apply order: the order given
    assert [t["name"] for t in summary["techniques"]] == ["grad-accum", "amp"]
    assert summary["techniques"][0]["params"] == {"micro_batches": 2}
    assert summary["loss_final"] is not None
    assert build_summary(baseline)["techniques"] == []


# -- sharding over ranks ----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", ["zero", "fsdp"])
def test_sharding_halves_each_ranks_optimizer_state(baseline, name):
    run = measured(f"{name}:world_size=2")
    ranks = run.worker_summary["distributed"]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    full = after_step(baseline)["optimizer_state"]
    for rank in ranks:
        state = rank["tracking"]["max_by_category"]["optimizer_state"]
        assert 0.4 * full < state < 0.6 * full, (rank["rank"], state, full)
        assert all(s["loss"] is not None for s in rank["steps"])
    if name == "fsdp":  # parameters are sharded too
        for rank in ranks:
            params = rank["tracking"]["max_by_category"]["parameter"]
            assert params < 0.6 * baseline.model["parameter_bytes"]
    total = run.worker_summary["distributed"]["sum"]
    assert total["tracked_bytes"] == sum(r["tracking"]["tracked_bytes"] for r in ranks)
    # rank 1 streamed live into a run of its own: the same figures it gave rank 0
    peer = run.ranks[1]
    assert peer.state == "finished" and peer.rank == 1
    assert [s.step for s in peer.steps] == list(range(BASE["steps"]))
    assert len(peer.tensors) > 0 and len(peer.samples) > 0
    assert peer.worker_summary["tracking"] == ranks[1]["tracking"]
