"""The CUDA path. The joins are tested everywhere on a snapshot in PyTorch's layout;
the real allocator is tested where a GPU exists (marked gpu, skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch

from memviz.core.categories import CODE
from memviz.tracking.cuda import rounded, segment_summary

from .conftest import run_worker

SNAPSHOT = {  # the layout torch.cuda.memory._snapshot() returns
    "segments": [
        {"device": 0, "address": 1000, "total_size": 2 << 20, "allocated_size": 1536,
         "active_size": 1536, "requested_size": 1400, "stream": 0, "segment_type": "small",
         "blocks": [
             {"address": 1000, "size": 1024, "requested_size": 1000, "state": "active_allocated"},
             {"address": 2024, "size": 512, "requested_size": 400, "state": "active_allocated"},
             {"address": 2536, "size": (2 << 20) - 1536, "requested_size": 0,
              "state": "inactive"},
         ]},
        {"device": 0, "address": 9_000_000, "total_size": 20 << 20, "allocated_size": 8 << 20,
         "active_size": 8 << 20, "requested_size": 8 << 20, "stream": 0,
         "segment_type": "large",
         "blocks": [
             {"address": 9_000_000, "size": 8 << 20, "requested_size": 8 << 20,
              "state": "active_allocated"},
             {"address": 9_000_000 + (8 << 20), "size": 12 << 20, "requested_size": 0,
              "state": "inactive"},
         ]},
        {"device": 1, "address": 5, "total_size": 2 << 20, "allocated_size": 0,
         "active_size": 0, "requested_size": 0, "stream": 0, "segment_type": "small",
         "blocks": []},
    ],
    "device_traces": [[], []],
}


def test_segment_summary_joins_blocks_to_categories_by_address():
    category_of = {1000: CODE["parameter"], 9_000_000: CODE["activation"]}
    summary = segment_summary(SNAPSHOT, category_of, device=0)
    assert summary["segments"] == 2
    assert summary["reserved"] == (2 << 20) + (20 << 20)
    assert summary["allocated"] == 1024 + 512 + (8 << 20)
    assert summary["largest_free_block"] == 12 << 20
    assert summary["by_category"]["parameter"] == 1024
    assert summary["by_category"]["activation"] == 8 << 20
    assert summary["by_category"]["other"] == 512  # a block the tracker never saw


def test_blocks_round_to_512_bytes():
    assert [rounded(n) for n in (1, 512, 513, 4096, 1_000_000)] == [512, 512, 1024, 4096,
                                                                     1_000_448]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")
def test_tracked_bytes_equal_the_allocator_at_every_step_boundary():
    run, _ = run_worker(model="gpt2-tiny", steps=3, device="cuda", batch_size=4, seq_len=256)
    assert run.state == "finished", run.error
    assert len(run.cuda_memory) == 3
    for entry in run.cuda_memory:
        assert entry["tracked_rounded"] == entry["torch_allocated"], entry
        assert entry["reserved"] >= entry["allocated"] == entry["torch_allocated"]
    env = run.environment
    assert env["nvml"]["available"] and env["cuda"]["name"]
    assert run.samples.has_data("gpu_device_used") and run.samples.has_data("torch_reserved")
    assert all(s.peak_gpu_bytes > 0 for s in run.steps)
