"""Under checkpointing, what backward recomputes belongs to the module being recomputed
(not to the graph node whose saved tensor asked for it): on a model built here, alone,
and with amp."""

from __future__ import annotations

import time

import pytest
import torch
from torch.utils.checkpoint import checkpoint

from memviz.tracking import TensorTracker
from memviz.tracking.tracker import PHASE_CODE

BACKWARD = PHASE_CODE["backward"]
WIDTH, HIDDEN, BATCH = 64, 512, 32



class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.Linear(WIDTH, HIDDEN)
        self.act = torch.nn.GELU()
        self.down = torch.nn.Linear(HIDDEN, WIDTH)
        self.drop = torch.nn.Dropout(0.1)

    def forward(self, x):
        return x + self.drop(self.down(self.act(self.up(x))))


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(Block() for _ in range(3))

    def forward(self, x):
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False)
        return x


@pytest.mark.parametrize("amp", [False, True], ids=["checkpointing", "with-amp"])
def test_recomputed_activations_belong_to_the_recomputed_module(amp):
    torch.manual_seed(0)
    model = Net()
    tracker = TensorTracker(time.monotonic, time.monotonic())
    tracker.start(model)
    try:
        x = torch.randn(BATCH, WIDTH)
        tracker.set_phase("forward", 0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = model(x).square().mean()
        tracker.set_phase("backward", 0)
        loss.backward()
        tracker.set_phase("", 0)
        messages = tracker.take_messages()
    finally:
        tracker.stop()
    names = {(e[0], e[1]): e[2] for m in messages if m["type"] == "strings"
             for e in m["entries"]}
    events = [m["columns"] for m in messages if m["type"] == "tensor_events"]
    hidden_bytes = BATCH * HIDDEN * (2 if amp else 4)
    recomputed: dict[str, int] = {}
    gradients_made: set[tuple[str, str]] = set()  # (module, op) of backward's own ops
    for cols in events:
        for kind, nbytes, module, op, phase in zip(cols["kind"], cols["nbytes"],
                                                   cols["module"], cols["op"], cols["phase"],
                                                   strict=True):
            if kind != 0 or phase != BACKWARD:
                continue
            name = names.get(("module", int(module)), "")
            gradients_made.add((name, names.get(("op", int(op)), "")))
            if nbytes == hidden_bytes:
                recomputed[name] = recomputed.get(name, 0) + 1
    # each block's hidden activations are made again by its own up projection and GELU
    for i in range(3):
        assert recomputed.get(f"blocks.{i}.up", 0) >= 1, recomputed
        assert recomputed.get(f"blocks.{i}.act", 0) >= 1, recomputed
    assert not any(name.endswith(".drop") for name in recomputed), recomputed
    # and backward's own ops after it belong to theirs (a recomputation stopped early
    # leaves no module on the stack)
    for i in range(3):
        assert (f"blocks.{i}.act", "gelu_backward.default") in gradients_made, gradients_made
