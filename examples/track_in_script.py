"""``memviz.track()`` around the part of a program to profile:

    python examples/track_in_script.py run.memviz

then open ``run.memviz`` in the window (``memviz run.memviz``). Pass
``connect="tcp:127.0.0.1:PORT"`` instead of a file to watch it live in a window
that waits for it (File → Wait for a program…).
"""

from __future__ import annotations

import sys

import torch
from torch import nn

import memviz


class TinyLM(nn.Module):
    """An embedding, two MLP blocks and a head tied to the embedding."""

    def __init__(self, vocab: int = 512, width: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.Sequential(*(nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                                    nn.Linear(4 * width, width))
                                      for _ in range(2)))
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(ids)))


def main(output: str) -> None:
    model = TinyLM()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with memviz.track(output=output, force=True):
        for _ in range(3):
            ids = torch.randint(0, 512, (4, 64))
            logits = model(ids[:, :-1])
            loss = nn.functional.cross_entropy(logits.reshape(-1, 512), ids[:, 1:].reshape(-1))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    print(f"recorded to {output}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "track_in_script.memviz")
