"""Every way to name a model: presets, a saved directory, factories, and bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest

from .conftest import run_worker

PRESET_PARAMETERS = {
    "gpt2-tiny": 3_487_232,
    "llama-tiny": 3_033_344,
    "bert-tiny": 3_555_332,
    "lstm-lm": 3_875_072,
    "conv-lm": 2_496_768,
    "minilm-l6": 22_744_506,
}


@pytest.mark.parametrize("preset", sorted(PRESET_PARAMETERS))
def test_every_preset_trains_one_step_with_exact_categories(preset):
    run, _ = run_worker(model=preset, steps=1, batch_size=2, seq_len=32)
    assert run.state == "finished", run.error
    assert run.model["parameters"] == PRESET_PARAMETERS[preset]
    assert run.model["dtype"] == "float32"
    assert len(run.steps) == 1 and math.isfinite(run.steps[0].loss)
    assert_exact_after_adamw_step(run)


def assert_exact_after_adamw_step(run) -> None:
    """The tracker's categories right after optimizer.step(), before zero_grad."""
    [mark] = [m for m in run.tensors.marks if m["label"] == "after_optimizer_step"][-1:]
    live = mark["live_by_category"]
    model = run.model
    trainable = model["trainable_parameter_bytes"]
    assert live["parameter"] + live["parameter_frozen"] == model["parameter_bytes"]
    assert live["parameter"] == trainable
    assert live["parameter_frozen"] == model["frozen_parameter_bytes"]
    assert live["buffer"] == model["buffer_bytes"]
    assert live["gradient"] == trainable
    # AdamW: exp_avg and exp_avg_sq per parameter, plus a float32 scalar step counter
    assert live["optimizer_state"] == 2 * trainable + 4 * model["trainable_parameter_tensors"]


def test_a_saved_pretrained_directory_loads_back_by_path(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=300, n_positions=128, n_embd=64, n_layer=2, n_head=2)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(tmp_path / "mymodel")
    assert (tmp_path / "mymodel" / "model.safetensors").exists()
    run, _ = run_worker(model=str(tmp_path / "mymodel"), steps=1, batch_size=2, seq_len=16)
    assert run.state == "finished", run.error
    assert run.model["class"] == "GPT2LMHeadModel"
    assert run.model["parameters"] == sum(p.numel() for p in model.parameters())


FACTORY = textwrap.dedent('''
    import torch
    from torch import nn

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(97, 24)
            self.mix = nn.Linear(24, 24)
            self.head = nn.Linear(24, 97)

        def forward(self, ids):
            return self.head(torch.relu(self.mix(self.embed(ids))))

    def plain():
        return Odd()

    def with_own_loss():
        def make_batch(batch_size, seq_len, device):
            return torch.randint(0, 97, (batch_size, seq_len), device=device)
        def loss(model, batch):
            return model(batch).float().pow(2).mean()
        return {"model": Odd(), "make_batch": make_batch, "loss": loss}

    def broken():
        raise RuntimeError("the factory is broken\\nsecond line of detail")

    def not_a_module():
        return 42
''')


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "factories.py"
    path.write_text(FACTORY)
    return path


def test_a_factory_file_loads_and_gets_a_cross_entropy_loss(factory_file):
    run, _ = run_worker(model=f"{factory_file}:plain", steps=2, batch_size=2, seq_len=16)
    assert run.state == "finished", run.error
    assert run.model["parameters"] == 97 * 24 + 24 * 24 + 24 + 24 * 97 + 97
    # cross-entropy over 97 tokens starts near log(97)
    assert abs(run.steps[0].loss - math.log(97)) < 1.0


def test_a_factory_may_bring_its_own_batch_and_loss(factory_file):
    run, _ = run_worker(model=f"{factory_file}:with_own_loss", steps=1, batch_size=2,
                        seq_len=16)
    assert run.state == "finished", run.error
    assert run.model["kind"] == "custom"
    assert 0 < run.steps[0].loss < 10


def test_a_module_function_factory_loads():
    run, _ = run_worker(model="memviz.models.presets:ConvLanguageModel", steps=1,
                        batch_size=1, seq_len=16)
    assert run.state == "finished", run.error
    assert run.model["class"] == "ConvLanguageModel"


@pytest.mark.parametrize("model,expected", [
    ("/no/such/dir", "no preset, directory or factory named '/no/such/dir'"),
    ("gpt7-huge", "no preset, directory or factory named 'gpt7-huge'"),
    ("{tmp}/factories.py:broken", "raised RuntimeError: the factory is broken"),
    ("{tmp}/factories.py:not_a_module", "returned int, not a torch.nn.Module"),
    ("{tmp}/factories.py:missing", "has no function missing"),
    ("{tmp}/nofile.py:f", "does not exist"),
    ("no_such_package.module:f", "cannot import no_such_package.module"),
    ("{tmp}", "is not a Hugging Face model directory"),
])
def test_bad_models_give_a_one_line_error(model, expected, factory_file):
    run, session = run_worker(model=model.format(tmp=factory_file.parent), steps=1)
    assert run.state == "failed"
    assert run.error["kind"] == "model"
    assert expected in run.error["message"]
    assert "\n" not in run.error["message"]
    assert session.exit_code == 2


def test_cli_run_writes_the_summary_json(tmp_path):
    out = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-m", "memviz", "run", "--model", "gpt2-tiny", "--mode", "train",
         "--batch-size", "2", "--seq-len", "64", "--steps", "2", "--optimizer", "sgd",
         "--lr", "0.01", "--device", "cpu", "--seed", "3", "--summary", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())
    assert summary["memviz_version"]
    assert summary["model"] == {**summary["model"], "name": "gpt2-tiny",
                                "parameters": 3_487_232, "trainable_parameters": 3_487_232}
    assert summary["mode"] == "train" and summary["device"] == "cpu"
    assert summary["techniques"] == []
    assert [s["step"] for s in summary["steps"]] == [0, 1]
    assert all(s["peak_rss_bytes"] > 3_487_232 * 4 * 2 for s in summary["steps"])
    assert summary["peak"]["rss_bytes"] >= max(s["peak_rss_bytes"] for s in summary["steps"])
    assert summary["peak"]["gpu_bytes"] is None
    assert summary["step_seconds_median"] > 0
    assert "peak RSS" in proc.stdout


@pytest.mark.parametrize("args,reason", [
    (["--model", "nope"], "no preset, directory or factory named 'nope'"),
    (["--batch-size", "0"], "batch_size must be an integer from 1"),
    (["--device", "tpu"], "device must be cpu, cuda or cuda:N"),
    (["--device", "cuda"], "device cuda asked for, but"),
])
def test_cli_run_failures_exit_non_zero_with_one_line(args, reason):
    import torch

    if args == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = subprocess.run([sys.executable, "-m", "memviz", "run", "--steps", "1", *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("memviz: error:")]
    assert len(lines) == 1 and reason in lines[0], proc.stderr
