"""The GPU paths of the simulated device and the snapshot import, where a GPU is lent:
the allocator model against the real allocator, and a snapshot torch records with
``stacks="all"`` read back with Python sites, inferred categories and its segments."""

from __future__ import annotations

import pickle

import pytest

torch = pytest.importorskip("torch")

from memviz.core.cuda_model import CUBLAS_WORKSPACE_BYTES, CUDA_CONTEXT_BYTES  # noqa: E402
from memviz.core.summary import build_summary  # noqa: E402
from memviz.snapshot import open_run  # noqa: E402

from .conftest import run_worker  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="needs an NVIDIA GPU with CUDA")]
SPEC = dict(model="gpt2-tiny", mode="train", steps=2, batch_size=4, seq_len=256, detail="all")


def test_the_simulated_device_matches_the_real_allocator():
    real, _ = run_worker(device="cuda", **SPEC)
    simulated, _ = run_worker(device="cuda", simulate=True, **SPEC)
    assert real.state == simulated.state == "finished", (real.error, simulated.error)
    model = build_summary(simulated)["simulated_cuda"]
    real_allocated = max(s.peak_gpu_bytes for s in real.steps)  # max_memory_allocated
    assert abs(model["allocated_peak"] - real_allocated) <= 0.02 * real_allocated, \
        (model["allocated_peak"], real_allocated)
    real_reserved = max(m["reserved"] for m in real.cuda_memory)
    assert abs(model["reserved_peak"] - real_reserved) <= 0.10 * real_reserved, \
        (model["reserved_peak"], real_reserved)
    # the assumed context and workspace against what NVML charged beyond reserved
    outside = max(real.samples.column("gpu_process_used")
                  - real.samples.column("torch_reserved"))
    assumed = CUDA_CONTEXT_BYTES + CUBLAS_WORKSPACE_BYTES
    assert 0.5 * assumed <= outside <= 2 * assumed, (outside, assumed)


def test_a_snapshot_recorded_with_every_stack_reads_back_with_python_sites(tmp_path):
    torch.cuda.memory._record_memory_history(context="all", stacks="all")
    try:
        model = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.ReLU(),
                                    torch.nn.Linear(2048, 512)).cuda()
        optimizer = torch.optim.AdamW(model.parameters())
        for _ in range(2):
            loss = model(torch.randn(64, 512, device="cuda")).square().mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        reserved = torch.cuda.memory_reserved()
        snapshot = torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    path = tmp_path / "real.pickle"
    with open(path, "wb") as f:
        pickle.dump(snapshot, f)
    run = open_run(path)
    log = run.tensors
    stacks = [int(s) for s in log.rows.column("stack") if s >= 0]
    firsts = {log.stack_text(s)[0] for s in stacks if log.stack_text(s)}
    assert firsts and all(":" in f and ".py:" in f for f in firsts), sorted(firsts)[:5]
    assert any(len(log.stack_text(s, native=True)) > len(log.stack_text(s)) for s in stacks)
    summary = build_summary(run)
    assert summary["device"].startswith("cuda:") and summary["mode"] is None
    assert summary["max_by_category"]["optimizer_state"] > 0
    assert summary["max_by_category"]["gradient"] > 0
    assert run.category_inferred is not None
    assert run.device_segments.state_at(1e12).reserved == reserved  # after every entry
