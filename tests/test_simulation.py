"""Simulation: the real step on fake tensors, with the same tracker. Exact against the
measured run on models built here; a 1.1B model on this machine; answers for a GPU
this machine lacks; what cannot be simulated named."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from memviz.core.categories import CODE
from memviz.core.cuda_model import CachingAllocatorModel, round_request, segment_size
from memviz.core.summary import build_summary

from .conftest import WORKER_DEADLINE_S, run_worker
from .model_zoo import save_hf

MEMVIZ = [sys.executable, "-m", "memviz"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("simzoo")
    return {k: save_hf(k, folder) for k in ("mistral", "qwen2")}


def _peaks(run):
    tracking = run.worker_summary["tracking"]
    return tracking["tracked_bytes"], tracking["peak_by_category"], tracking["max_by_category"]


@pytest.mark.parametrize("model,techniques", [
    ("gpt2-tiny", []),
    ("llama-tiny", [{"name": "lora", "params": {"r": 4}}]),
    ("conv-lm", [{"name": "checkpointing", "params": {}}]),
    # a training step without a cache: transformers reads the position ids for packing
    ("gpt2-tiny", [{"name": "checkpointing", "params": {}}]),
])
def test_a_simulated_step_is_the_measured_step_to_the_byte(model, techniques):
    spec = {"model": model, "steps": 2, "batch_size": 2, "seq_len": 64, "data": "random",
            "detail": "all", "techniques": techniques}
    real, _ = run_worker(**spec)
    fake, _ = run_worker(simulate=True, **spec)
    assert real.state == fake.state == "finished", (real.error, fake.error)
    assert fake.worker_summary["simulated"] is True and fake.steps[0].loss is None
    assert _peaks(fake) == _peaks(real)


def test_models_built_elsewhere_simulate_exactly(zoo):
    """Qwen2 with tied embeddings; Mistral with its first layer frozen (a factory)."""
    for kind in ("qwen2", "mistral"):
        spec = {"model": str(zoo[kind]), "steps": 2, "batch_size": 2, "seq_len": 64,
                "data": "random", "detail": "all"}
        real, _ = run_worker(**spec)
        fake, _ = run_worker(simulate=True, **spec)
        assert _peaks(fake) == _peaks(real), kind


def _rank_figures(run):
    return [(r["rank"], r["tracking"]["tracked_bytes"], r["tracking"]["peak_by_category"])
            for r in run.worker_summary["distributed"]["ranks"]]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zero", "fsdp"])
def test_each_rank_of_a_sharded_run_simulates_exactly(name):
    """Two real gloo ranks against two ranks simulated in one process."""
    spec = {"model": "gpt2-tiny", "steps": 2, "batch_size": 4, "seq_len": 64,
            "data": "random", "detail": "all",
            "techniques": [{"name": name, "params": {"world_size": 2}}]}
    real, _ = run_worker(**spec)
    fake, _ = run_worker(simulate=True, **spec)
    assert real.state == fake.state == "finished", (real.error, fake.error)
    assert not fake.ranks  # no peer process streamed: every rank ran in the one worker
    assert _rank_figures(fake) == _rank_figures(real)
    if name == "zero":  # DDP's gradient buckets are found once the first step made them
        rank0 = fake.worker_summary["distributed"]["ranks"][0]["tracking"]
        rows = fake.tensors.rows
        t_alloc, t_free = rows.column("t_alloc"), rows.column("t_free")
        live = (t_alloc <= rank0["peak_t"]) & ~(t_free <= rank0["peak_t"])
        grads = rows.column("nbytes")[live & (rows.column("category") == CODE["gradient"])]
        # the buckets, and a gradient just computed that DDP has not copied in yet: each
        # a gradient from its birth
        assert real.model["parameter_bytes"] in grads.tolist()
        assert rank0["peak_by_category"]["gradient"] == int(grads.sum())


def test_a_world_of_eight_ranks_simulates_on_one_cpu():
    """Per rank, for a cluster this machine is not: ZeRO gives each rank whole
    parameters' state (so ranks differ, and their states add up to the unsharded
    optimizer's); FSDP gives each rank an eighth of every parameter."""
    base = {"model": "gpt2-tiny", "steps": 2, "batch_size": 8, "seq_len": 64,
            "data": "random", "detail": "all", "simulate": True}
    alone, _ = run_worker(**base)
    full_state = alone.worker_summary["tracking"]["max_by_category"]["optimizer_state"]
    parameters = alone.model["parameter_bytes"]
    for name in ("zero", "fsdp"):
        run, _ = run_worker(techniques=[{"name": name, "params": {"world_size": 8}}], **base)
        assert run.state == "finished", run.error
        ranks = run.worker_summary["distributed"]["ranks"]
        assert [r["rank"] for r in ranks] == list(range(8))
        states = [r["tracking"]["max_by_category"]["optimizer_state"] for r in ranks]
        params = [r["tracking"]["max_by_category"]["parameter"] for r in ranks]
        if name == "zero":
            assert sum(states) == full_state and len(set(states)) > 1
            assert params == [parameters] * 8
        else:
            assert sum(params) == parameters and max(states) < full_state / 7
        total = run.worker_summary["distributed"]["sum"]["tracked_bytes"]
        assert total == sum(r["tracking"]["tracked_bytes"] for r in ranks)
        # the rank that peaks highest, over the lowest, and in which categories
        highest = build_summary(run)["distributed"]["highest"]
        peaks = {r["rank"]: r["tracking"]["tracked_bytes"] for r in ranks}
        assert peaks[highest["rank"]] == max(peaks.values())
        assert highest["bytes"] == max(peaks.values()) - min(peaks.values())
        if name == "zero":  # whole parameters' state a rank: the state differs
            assert highest["bytes"] > 0 and "optimizer_state" in highest["categories"]


def test_a_config_json_alone_simulates_a_1b_model_on_this_machine(tmp_path):
    folder = tmp_path / "llama-1b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 2048,
        "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
        "num_key_value_heads": 4, "vocab_size": 32000, "max_position_embeddings": 2048,
        "tie_word_embeddings": False}))
    summary = tmp_path / "s.json"
    started = time.monotonic()
    done = subprocess.run([*MEMVIZ, "run", "--simulate", "--model", str(folder), "--steps", "1",
                           "--batch-size", "1", "--seq-len", "2048", "--technique",
                           "checkpointing", "--summary", str(summary)],
                          capture_output=True, text=True, timeout=WORKER_DEADLINE_S)
    assert done.returncode == 0, done.stderr
    result = json.loads(summary.read_text())
    params = 1_100_048_384
    assert result["model"]["parameters"] == params and result["simulated"] is True
    assert result["peak_by_category"]["parameter"] == params * 4  # exact, never allocated
    assert result["peak"]["tracked_bytes"] > 8 << 30
    assert result["peak"]["rss_bytes"] < 1 << 30  # 16.9 GiB simulated in a few hundred MiB
    assert time.monotonic() - started < WORKER_DEADLINE_S


def test_fit_answers_for_a_gpu_this_machine_lacks():
    done = subprocess.run([*MEMVIZ, "fit", "--simulate", "--device", "cuda", "--limit",
                           "24GiB", "--seq-len", "1024", "--steps", "2"],
                          capture_output=True, text=True, timeout=WORKER_DEADLINE_S * 2)
    assert done.returncode == 0, done.stderr
    assert "Largest batch_size under 24.0 GiB:" in done.stdout
    assert "not confirmed: no cuda here" in done.stdout


def test_what_cannot_be_simulated_is_named(tmp_path):
    factory = tmp_path / "masked.py"
    factory.write_text("import torch\n"
                       "class Masked(torch.nn.Module):\n"
                       "    def __init__(self):\n"
                       "        super().__init__()\n"
                       "        self.e = torch.nn.Embedding(256, 16)\n"
                       "    def forward(self, ids):\n"
                       "        x = self.e(ids)\n"
                       "        kept = x[x > 0]  # how many: the values decide\n"
                       "        return x @ self.e.weight.T + kept.sum()\n"
                       "def build():\n"
                       "    return Masked()\n")
    run, _ = run_worker(model=f"{factory}:build", steps=1, batch_size=1, seq_len=16,
                        simulate=True)
    assert run.state == "failed"
    assert run.error["message"].startswith("cannot simulate:")
    assert "nonzero" in run.error["message"] or "values" in run.error["message"]


def test_the_caching_allocator_model_rounds_pools_and_reuses():
    assert [round_request(n) for n in (1, 512, 513)] == [512, 512, 1024]
    assert segment_size(4096) == 2 << 20 and segment_size(3 << 20) == 20 << 20
    assert segment_size(11 << 20) == 12 << 20
    model = CachingAllocatorModel()
    small = [model.allocate(100_000) for _ in range(25)]  # 2 MiB segments, split
    assert model.segments == 2 and model.reserved == 4 << 20
    for block in small:
        model.release(block)
    assert model.largest_free() == 2 << 20  # freed neighbours merged back
    big = model.allocate(15 << 20)  # a large request: its own 16 MiB segment
    assert model.reserved == (4 << 20) + (16 << 20)
    model.release(big)
    again = model.allocate(15 << 20)  # reused from the cache: nothing new reserved
    assert model.reserved == (4 << 20) + (16 << 20)
    # the 1 MiB left is not more than 1 MiB: the block is not split, and counts whole
    assert again.size == 16 << 20 and model.peak_allocated == 16 << 20
