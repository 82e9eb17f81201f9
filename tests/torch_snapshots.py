"""Snapshots in PyTorch's own layout (``torch.cuda.memory._snapshot()``), as a real GPU
writes them with ``_record_memory_history(context="all", stacks="all")``: every
entry's frames start with the C++ of the allocator and autograd, then Python's.

Built here from the documented layout (torch/cuda/_memory_viz.py's TypedDicts:
segments of blocks; per device a trace of ``segment_alloc``, ``alloc``,
``free_requested``, ``free_completed``, ``oom`` entries), since no GPU records one.
"""

from __future__ import annotations

import pickle
from pathlib import Path

MiB = 1 << 20
BASE = 0x7F3A_0000_0000

# the frames a CUDA allocation carries above Python's with stacks="all"
_CPP_TOP = [
    {"filename": "??", "line": 0, "name": "torch::unwind::unwind()"},
    {"filename": "??", "line": 0, "name": "torch::CapturedTraceback::gather(bool, bool, bool)"},
    {"filename": "??", "line": 0, "name": "torch::cuda::gather_with_cpp()"},
    {"filename": "/pytorch/c10/cuda/CUDACachingAllocator.cpp", "line": 1504,
     "name": "c10::cuda::CUDACachingAllocator::Native::DeviceCachingAllocator::malloc"},
    {"filename": "??", "line": 0, "name": "at::native::empty_cuda(...)"},
    {"filename": "/pytorch/build/aten/src/ATen/RegisterCUDA.cpp", "line": 9421,
     "name": "at::(anonymous namespace)::wrapper_CUDA_mm(...)"},
    {"filename": "??", "line": 0, "name": "_PyEval_EvalFrameDefault"},
]
_ENGINE = [{"filename": "??", "line": 0, "name": "torch::autograd::Engine::thread_main("
                                              "std::shared_ptr<GraphTask> const&)"},
           {"filename": "??", "line": 0, "name": "torch::autograd::generated::MmBackward0::apply"},
           {"filename": "/usr/lib/x86_64-linux-gnu/libc.so.6", "line": 0, "name": "clone"}]


def _py(*frames: tuple[str, int, str]) -> list[dict]:
    return [{"filename": f, "line": line, "name": name} for f, line, name in frames]


TRAIN = ("/home/user/train.py", 41, "main")
FORWARD = _CPP_TOP + _py(("/usr/lib/python3/site-packages/torch/nn/modules/linear.py", 125,
                          "forward"),
                         ("/usr/lib/python3/site-packages/torch/nn/modules/module.py", 1750,
                          "_call_impl"),
                         ("/home/user/model.py", 17, "forward"), TRAIN)
BACKWARD = _CPP_TOP + _ENGINE  # autograd's device thread: no Python frame at all
OPTIMIZER_STATE = _CPP_TOP + _py(
    ("/usr/lib/python3/site-packages/torch/optim/adamw.py", 163, "_init_group"),
    ("/usr/lib/python3/site-packages/torch/optim/adamw.py", 210, "step"),
    ("/home/user/train.py", 44, "main"))
OPTIMIZER_TEMP = _CPP_TOP + _py(
    ("/usr/lib/python3/site-packages/torch/optim/adamw.py", 498, "_multi_tensor_adamw"),
    ("/usr/lib/python3/site-packages/torch/optim/adamw.py", 210, "step"),
    ("/home/user/train.py", 44, "main"))
DATA = _CPP_TOP + _py(("/home/user/train.py", 38, "main"))


def one_step() -> dict:
    """Device 0: one training step on a 64 MiB segment with 8 MiB of weights alive
    before recording began; a forward (an activation kept for backward, a temporary),
    a backward (a gradient, a temporary), the first optimizer step (state, a
    temporary), then a 28 MiB request that fails with 30 MiB cached free in two pieces
    (4 and 26 MiB) and nothing left on the device.
    Device 1: a small trace of its own."""
    us = [1_000_000]

    def at() -> int:
        us[0] += 100
        return us[0]

    trace: list[dict] = []

    def alloc(offset: int, size: int, frames: list) -> None:
        trace.append({"action": "alloc", "addr": BASE + offset, "size": size, "stream": 0,
                      "time_us": at(), "frames": frames})

    def free(offset: int, size: int, frames: list) -> None:
        t = at()
        for action in ("free_requested", "free_completed"):
            trace.append({"action": action, "addr": BASE + offset, "size": size,
                          "stream": 0, "time_us": t, "frames": frames})

    weights = (0, 8 * MiB)  # alive before recording: a block with no alloc entry
    alloc(8 * MiB, 2 * MiB, DATA)  # the batch
    alloc(10 * MiB, 4 * MiB, FORWARD)  # activation
    alloc(14 * MiB, 4 * MiB, FORWARD)  # temporary
    free(14 * MiB, 4 * MiB, FORWARD)
    alloc(14 * MiB, 8 * MiB, BACKWARD)  # gradient
    alloc(22 * MiB, 2 * MiB, BACKWARD)  # temporary
    free(22 * MiB, 2 * MiB, BACKWARD)
    free(10 * MiB, 4 * MiB, BACKWARD)  # the activation, used up
    alloc(22 * MiB, 16 * MiB, OPTIMIZER_STATE)  # exp_avg + exp_avg_sq
    alloc(38 * MiB, 6 * MiB, OPTIMIZER_TEMP)
    free(38 * MiB, 6 * MiB, OPTIMIZER_TEMP)
    trace.append({"action": "oom", "addr": 0, "size": 28 * MiB, "stream": 0,
                  "time_us": at(), "frames": FORWARD, "device_free": 0})
    live = [(*weights, DATA, "active_allocated"), (8 * MiB, 2 * MiB, DATA, "active_allocated"),
            (10 * MiB, 4 * MiB, [], "inactive"), (14 * MiB, 8 * MiB, BACKWARD, "active_allocated"),
            (22 * MiB, 16 * MiB, OPTIMIZER_STATE, "active_allocated"),
            (38 * MiB, 26 * MiB, [], "inactive")]
    segment = {"device": 0, "address": BASE, "total_size": 64 * MiB, "stream": 0,
               "segment_type": "large", "segment_pool_id": (0, 0), "is_expandable": False,
               "allocated_size": 34 * MiB, "active_size": 34 * MiB,
               "requested_size": 34 * MiB, "frames": [],
               "blocks": [{"address": BASE + o, "size": n, "requested_size": n,
                           "state": state, "frames": frames}
                          for o, n, frames, state in live]}
    other = BASE + (1 << 36)
    trace1 = [{"action": "alloc", "addr": other, "size": 512, "stream": 0,
               "time_us": 1_000_050, "frames": DATA}]
    segment1 = {"device": 1, "address": other, "total_size": 2 * MiB, "stream": 0,
                "segment_type": "small", "segment_pool_id": (0, 0), "is_expandable": False,
                "allocated_size": 512, "active_size": 512, "requested_size": 512,
                "frames": [], "blocks": [
                    {"address": other, "size": 512, "requested_size": 512,
                     "state": "active_allocated", "frames": DATA},
                    {"address": other + 512, "size": 2 * MiB - 512, "requested_size": 0,
                     "state": "inactive", "frames": []}]}
    return {"segments": [segment, segment1], "device_traces": [trace, trace1],
            "allocator_settings": {"PYTORCH_CUDA_ALLOC_CONF": ""},
            "external_annotations": []}


def write(path: Path, snapshot: dict | None = None) -> Path:
    with open(path, "wb") as f:
        pickle.dump(snapshot or one_step(), f)
    return path
