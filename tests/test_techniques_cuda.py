"""The CUDA-only techniques, where a GPU exists (marked gpu, skipped elsewhere).

On CPU their refusals are tested in tests/test_techniques.py.
"""

from __future__ import annotations

import pytest
import torch

from memviz.techniques import parse_technique

from .conftest import run_worker

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="needs an NVIDIA GPU with CUDA")]
BASE = {"model": "gpt2-tiny", "batch_size": 4, "seq_len": 128, "steps": 2, "device": "cuda"}


def measured(*texts: str, **fields):
    run, _ = run_worker(**{**BASE, **fields,
                           "techniques": [parse_technique(t) for t in texts]})
    assert run.state == "finished", run.error
    return run


def max_bytes(run, category: str) -> int:
    return run.worker_summary["tracking"]["max_by_category"][category]


def test_cpu_offload_moves_saved_activations_off_the_gpu():
    base = measured()
    offloaded = measured("cpu-offload")
    gpu = [s.peak_gpu_bytes for s in offloaded.steps]
    assert max(gpu) < max(s.peak_gpu_bytes for s in base.steps)


def test_fp16_autocast_uses_a_loss_scaler_and_trains():
    run = measured("amp:dtype=fp16")
    assert all(s.loss is not None for s in run.steps)


def test_int4_weights_pack_two_per_byte():
    run = measured("quantize:method=int4-weight", "low-precision", mode="infer")
    report = next(t["report"] for t in run.worker_summary["techniques"]
                  if t["name"] == "quantize")
    # bf16 weights are 2 bytes; int4 is half a byte plus group scales
    assert report["linear_weight_bytes_after"] < 0.35 * report["linear_weight_bytes_before"]
