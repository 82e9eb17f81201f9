"""Models a user brings (a nanoGPT-style module, T5, BART, Mamba, Mistral) and exports
that keep the why: real workers, real files, figures checked against the models'
own shapes."""

from __future__ import annotations

import base64
import json
import pickle
import re
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from memviz.core.categories import CATEGORIES
from memviz.snapshot import connect_sql, open_run

from .conftest import WORKER_DEADLINE_S, run_worker
from .model_zoo import NanoGPT, save_hf

ROOT = Path(__file__).resolve().parent.parent
NANOGPT = f"{ROOT / 'tests' / 'model_zoo.py'}:nanogpt"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("zoo")
    return {kind: save_hf(kind, folder) for kind in ("t5", "bart", "mamba", "mistral")}


def _trainable_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def test_a_nanogpt_style_module_trains_on_its_own_loss_exactly():
    run, _ = run_worker(model=NANOGPT, steps=2, batch_size=2, seq_len=64)
    assert run.state == "finished", run.error
    assert any("forward(idx, targets)" in line.text for line in run.log)
    most = run.worker_summary["tracking"]["max_by_category"]
    params = _trainable_bytes(NanoGPT())  # its tied embedding and head once
    assert most["parameter"] == params and most["gradient"] == params
    assert most["optimizer_state"] == 2 * params + 4 * len(list(NanoGPT().parameters()))
    assert all(s.loss is not None and 7 < s.loss < 9.5 for s in run.steps)  # ln(4096) ≈ 8.3


def test_a_nanogpt_style_module_infers_and_its_drift_is_measured():
    run, _ = run_worker(model=NANOGPT, mode="infer", steps=1, batch_size=2, seq_len=64,
                        techniques=[{"name": "low-precision", "params": {}}])
    assert run.state == "finished", run.error
    drift = run.worker_summary["output_drift"]
    assert drift is not None and 0 < drift["relative_logit_error"] < 0.05


def test_an_after_run_extra_that_fails_loses_nothing(tmp_path):
    factory = tmp_path / "odd.py"
    factory.write_text("import torch\n"
                       "class Odd(torch.nn.Module):\n"
                       "    def __init__(self):\n"
                       "        super().__init__()\n"
                       "        self.e = torch.nn.Embedding(256, 32)\n"
                       "        self.calls = 0\n"
                       "    def forward(self, idx):\n"
                       "        self.calls += 1\n"
                       "        if self.calls > 1:\n"
                       "            return 'not logits'\n"
                       "        return self.e(idx) @ self.e.weight.T\n"
                       "def build():\n"
                       "    return Odd()\n")
    run, _ = run_worker(model=f"{factory}:build", mode="infer", steps=1, batch_size=1,
                        seq_len=16, techniques=[{"name": "low-precision", "params": {}}])
    assert run.state == "finished" and len(run.steps) == 1
    # the step's second forward (the drift's) fails; what the step measured stays
    assert any("skipped measuring the output drift" in line.text for line in run.log)
    assert run.worker_summary["flops_per_step"] == 2 * 16 * 32 * 256  # the step's matmul


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_encoder_decoders_train_infer_and_generate(zoo, kind):
    for mode in ("train", "infer"):
        run, _ = run_worker(model=str(zoo[kind]), mode=mode, steps=1, batch_size=2, seq_len=32)
        assert run.state == "finished", (mode, run.error)
        assert run.steps[0].loss is not None and run.steps[0].loss > 0
    run, _ = run_worker(model=str(zoo[kind]), mode="generate", steps=1, batch_size=4,
                        seq_len=32, max_new_tokens=4)
    assert run.state == "finished", run.error
    assert run.steps[0].tokens == 4 * 4
    most = run.worker_summary["tracking"]["max_by_category"]
    if kind == "t5":  # d_kv 32, 4 heads, 2 decoder layers: cross-attention over the 32
        layers, heads, d = 2, 4, 32  # encoder positions, self-attention over 4 new ones
        assert most["kv_cache"] == 2 * layers * 4 * heads * (32 + 4) * d * 4
    else:
        assert most["kv_cache"] > 0


def test_a_mamba_generation_state_is_a_cache_and_exact(zoo):
    run, _ = run_worker(model=str(zoo["mamba"]), mode="generate", steps=1, batch_size=4,
                        seq_len=32, max_new_tokens=4)
    assert run.state == "finished", run.error
    most = run.worker_summary["tracking"]["max_by_category"]
    layers, inner, kernel, state = 4, 2 * 128, 4, 16  # conv and SSM states, every layer
    # transformers 5.25 (the locked version): each cache layer also owns the length of
    # the sequence so far as an int64 scalar (``cumulative_length_linear``). It lives and
    # dies with the cache, so it is the cache's: 8 B a layer.
    assert most["kv_cache"] == layers * (4 * inner * (kernel + state) * 4 + 8)
    for mode in ("train", "infer"):
        other, _ = run_worker(model=str(zoo["mamba"]), mode=mode, steps=1, batch_size=2,
                              seq_len=32)
        assert other.state == "finished", other.error


def test_the_kv_cache_counts_at_the_generation_peak(zoo):
    run, _ = run_worker(model=str(zoo["mistral"]), mode="generate", steps=1, batch_size=4,
                        seq_len=64, max_new_tokens=4)
    assert run.state == "finished", run.error
    assert run.worker_summary["tracking"]["peak_by_category"]["kv_cache"] > 0


def test_techniques_say_what_applies_to_a_models_structure():
    done = subprocess.run([sys.executable, "-m", "memviz", "techniques", "--model", NANOGPT,
                           "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["structure"]["blocks"] == 2
    assert {"c_attn", "c_proj"} <= set(result["structure"]["lora_targets"])
    by_name = {t["name"]: t["on_model"] for t in result["techniques"]}
    assert by_name["checkpointing"]["applies"] and "2 blocks" in by_name["checkpointing"]["note"]
    assert not by_name["kv-cache"]["applies"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from memviz.core.run import Run
    from memviz.core.spec import RunSpec
    from memviz.session import WorkerSession
    from memviz.snapshot import Recorder

    folder = tmp_path_factory.mktemp("exports")
    files = {}
    for track in ("tensors", "tensors+stacks"):
        path = folder / f"{track}.memviz"
        run = Run(RunSpec(model="gpt2-tiny", steps=2, batch_size=2, seq_len=64, track=track))
        session = WorkerSession(run, recorder=Recorder(path, run.spec.to_dict()))
        session.start()
        assert session.wait(WORKER_DEADLINE_S) and run.state == "finished", run.error
        files[track] = path
    return files


def _viewer_snapshot(pickle_path: Path, tmp_path: Path) -> dict:
    """What PyTorch's offline memory viewer page embeds, read back as it reads it."""
    html = tmp_path / "viewer.html"
    done = subprocess.run([sys.executable, "-m", "torch.cuda._memory_viz", "trace_plot",
                           str(pickle_path), "-o", str(html)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    files = json.loads(re.search(r"const local_files = (\[.*?\])\n", html.read_text()).group(1))
    return pickle.loads(base64.b64decode(files[0]["base64"]))


def test_pytorchs_viewer_shows_module_and_op_for_most_blocks(recorded, tmp_path):
    out = tmp_path / "run.pickle"
    subprocess.run([sys.executable, "-m", "memviz", "export", str(recorded["tensors"]),
                    "--to", "torch-pickle", "-o", str(out)], check=True, timeout=120)
    snapshot = _viewer_snapshot(out, tmp_path)
    allocs = [e for e in snapshot["device_traces"][0] if e["action"] == "alloc"]
    tops = [e["frames"][0]["name"] for e in allocs]
    assert all(" · " in top for top in tops)  # never "allocated before _record_history"
    with_module = [t for t in tops if not t.startswith("(outside any module)")]
    assert len(with_module) / len(tops) > 0.6, len(with_module) / len(tops)
    assert any(t.startswith("transformer.h.0.attn · ") and "[backward" in t for t in tops)
    blocks = [b for s in snapshot["segments"] for b in s["blocks"]
              if b["state"] == "active_allocated"]
    assert blocks and all(b["frames"] for b in blocks)


def test_stacks_in_the_export_are_the_users_and_backward_has_its_forwards(recorded, tmp_path):
    out = tmp_path / "stacks.pickle"
    subprocess.run([sys.executable, "-m", "memviz", "export", str(recorded["tensors+stacks"]),
                    "--to", "torch-pickle", "-o", str(out)], check=True, timeout=120)
    snapshot = _viewer_snapshot(out, tmp_path)
    allocs = [e for e in snapshot["device_traces"][0] if e["action"] == "alloc"]
    frames = [f for e in allocs for f in e["frames"][1:]]
    machinery = ("/memviz/tracking/", "/memviz/worker/", "/memviz/session/")
    assert frames and not any(m in f["filename"] for f in frames for m in machinery)
    backward = [e for e in allocs if "[backward" in e["frames"][0]["name"]
                and not e["frames"][0]["name"].startswith("(outside")]
    assert backward and sum(len(e["frames"]) > 1 for e in backward) / len(backward) > 0.8


def test_every_allocation_is_a_row_for_pandas(recorded):
    import pandas as pd

    path = recorded["tensors"]
    run = open_run(path)
    plain = sqlite3.connect(path)  # the file itself holds only the compressed events
    assert not plain.execute("SELECT name FROM sqlite_master WHERE name LIKE 'allocations%'"
                             ).fetchall()
    plain.close()
    db = connect_sql(path)
    frame = pd.read_sql("SELECT * FROM allocations_named", db)
    assert len(frame) == len(run.tensors)
    assert frame["nbytes"].sum() == int(run.tensors.rows.column("nbytes").sum())
    assert set(frame["category"]) <= set(CATEGORIES) and "activation" in set(frame["category"])
    assert frame["shape"].str.contains("×").sum() == 0  # 4x256, parseable
    live = frame[frame["t_free"].isna()]["nbytes"].sum()
    assert live == int(run.tensors.rows.column("nbytes")[np.isnan(
        run.tensors.rows.column("t_free"))].sum())
    top = pd.read_sql("SELECT module, sum(nbytes) AS b FROM allocations_named WHERE category ="
                      " 'activation' GROUP BY module ORDER BY b DESC LIMIT 1", db)
    assert top["module"][0].startswith("transformer.h.")
    # what the file costs: the rows are built on reading, the events stay compressed
    blobs, events = db.execute("SELECT sum(length(columns)), sum(count) FROM event_batches"
                               ).fetchone()
    assert blobs / events < 8  # the whole file's bytes an event: benchmarks/snapshot.py


def test_csv_shapes_are_parseable(recorded, tmp_path):
    import csv

    out = tmp_path / "csv"
    subprocess.run([sys.executable, "-m", "memviz", "export", str(recorded["tensors"]),
                    "--to", "csv", "-o", str(out)], check=True, timeout=120)
    with open(out / "tensor_events.csv", newline="") as f:
        shapes = {row["shape"] for row in csv.DictReader(f)}
    assert "256x256" in shapes and not any("×" in s for s in shapes)


def test_the_licence_file_matches_the_package_metadata():
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.lstrip().startswith("Apache License")
    assert "Version 2.0" in license_text.splitlines()[1]
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"


def test_the_model_on_disk_as_each_technique_leaves_it():
    sizes = {}
    for name, mode, technique in (("base", "train", None), ("bf16", "train", "low-precision"),
                                  ("lora", "train", "lora"),
                                  ("int8", "infer", "quantize")):
        techniques = [] if technique is None else [{"name": technique, "params": {}}]
        run, _ = run_worker(model="gpt2-tiny", mode=mode, steps=1, batch_size=1, seq_len=32,
                            track="samples", techniques=techniques)
        assert run.state == "finished", run.error
        sizes[name] = run.worker_summary["model_on_disk"]
    params = 3_487_232
    assert params * 4 < sizes["base"]["bytes"] < params * 4 + 64 << 10  # safetensors + config
    assert sizes["bf16"]["bytes"] < 0.51 * sizes["base"]["bytes"]
    assert sizes["lora"]["format"].startswith("peft") and sizes["lora"]["bytes"] < 1 << 20
    assert sizes["int8"]["bytes"] < 0.4 * sizes["base"]["bytes"]
    assert all(s["zstd_bytes"] < s["bytes"] for s in sizes.values())
