"""``memviz run --model gpt2-tiny --data random --steps N`` as a user writes it without
memviz: the same model, batch (4 × 256), optimizer and steps, printing each step's
loss (``python -m benchmarks.plain_loop N``). ``benchmarks.end_to_end`` times the two."""

from __future__ import annotations

import sys

import torch

from memviz.models.presets import PRESETS


def main(steps: int) -> None:
    torch.manual_seed(0)
    model = PRESETS["gpt2-tiny"].build(torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(steps):
        ids = torch.randint(0, 256, (4, 256))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        print(f"step {step}: loss {loss.item():.3f}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
