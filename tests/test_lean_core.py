"""A run imports a technique's library only when that technique is chosen; a missing
library is refused before anything starts, with the command that installs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from memviz.core.spec import RunSpec, SpecError
from memviz.techniques import TECHNIQUES, applicability, preflight
from memviz.techniques import libraries as libs
from memviz.techniques.registry import libraries_for

from .conftest import run_worker


def test_every_technique_library_is_installed_here():
    # the suite installs the techniques extra: the tests below see a real import
    assert all(libs.installed(name) for name in libs.TECHNIQUE_LIBRARIES)


def test_a_baseline_worker_imports_no_technique_library(gpt2_train_run):
    assert gpt2_train_run.environment["technique_libraries"] == {}


def test_a_lora_worker_imports_peft_alone_and_measures_what_its_import_cost():
    run, _ = run_worker(model="gpt2-tiny", steps=1, batch_size=1, seq_len=32,
                        techniques=[{"name": "lora", "params": {}}])
    assert run.state == "finished", run.error
    found = run.environment["technique_libraries"]
    assert set(found) == {"peft"}
    assert found["peft"]["version"] == __import__("peft").__version__
    # importing peft after torch and transformers adds tens of MiB of RSS
    assert found["peft"]["import_rss_bytes"] > 4 << 20


def test_the_libraries_a_spec_needs():
    def need(**fields) -> set[str]:
        return libraries_for(RunSpec(**fields))

    assert need() == set()
    assert need(techniques=[{"name": "lora", "params": {}}]) == {"peft"}
    assert need(mode="infer", techniques=[{"name": "quantize",
                                           "params": {"method": "int8-dynamic"}}]) == set()
    assert need(mode="infer", techniques=[{"name": "quantize", "params": {}}]) == {"torchao"}
    assert need(optimizer="adamw-8bit") == {"bitsandbytes"}
    assert need(optimizer="adamw-4bit") == {"torchao"}
    assert need(mode="infer", optimizer="adamw-8bit") == set()  # no optimizer runs


def test_a_missing_library_is_refused_before_a_worker_starts(monkeypatch):
    monkeypatch.setattr(libs, "installed", lambda name: name != "peft")
    spec = RunSpec(techniques=[{"name": "lora", "params": {}}])
    with pytest.raises(SpecError) as refused:
        preflight(spec)
    assert str(refused.value) == ("this run needs peft, which is not installed: "
                                  "pip install 'memviz-profiler[lora]'")
    # the window greys the technique with the same reason
    assert applicability(TECHNIQUES["lora"], RunSpec()) == (
        "needs peft, which is not installed: pip install 'memviz-profiler[lora]'")
    assert applicability(TECHNIQUES["checkpointing"], RunSpec()) is None


def test_the_worker_hides_unrequested_libraries_from_transformers():
    """transformers probes for torchao while a model is built; in a worker the probe
    finds nothing until a run asks for torchao."""
    code = """
import sys
from memviz.worker import lean_imports
lean_imports.hide_technique_libraries()
import torch, transformers
from transformers import GPT2Config, GPT2LMHeadModel
GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
print(sorted(n for n in ("peft", "torchao", "bitsandbytes") if sys.modules.get(n)))
print("allowing torchao", file=sys.stderr, flush=True)
lean_imports.allow(["torchao"])
import torchao
print(sorted(n for n in ("peft", "torchao", "bitsandbytes") if sys.modules.get(n)))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["[]", "['torchao']"]
    # nothing of torchao's printed before the run allowed it
    assert "Failed to load" not in done.stderr.split("allowing torchao")[0]


def test_the_techniques_list_says_what_is_unavailable(monkeypatch, capsys):
    from memviz.cli.techniques_cmd import catalogue

    monkeypatch.setattr(libs, "installed", lambda name: name != "torchao")
    by_name = {e["name"]: e for e in catalogue()}
    assert by_name["quantize"]["unavailable"] == (
        "needs torchao, which is not installed: pip install 'memviz-profiler[torchao]'")
    assert by_name["lora"]["unavailable"] is None
